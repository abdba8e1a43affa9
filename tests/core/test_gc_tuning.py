"""The collector settings a serving worker runs with (see keel.main.tune_garbage_collector)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from keel.main import GC_THRESHOLDS, create_app, tune_garbage_collector
from tests.conftest import base_settings


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_startup_objects_are_frozen_and_young_collections_are_rarer(restored_gc: None) -> None:
    gc.unfreeze()
    built_at_startup: list[list[object]] = [[] for _ in range(3)]  # stands for what the app imported
    tune_garbage_collector()
    assert gc.get_freeze_count() >= len(built_at_startup)
    assert gc.get_threshold() == GC_THRESHOLDS
    assert GC_THRESHOLDS[0] > 700  # CPython's default first threshold


@pytest.mark.parametrize("tune", [True, False])
async def test_the_lifespan_tunes_the_collector_only_when_asked(tune: bool, tmp_path: Path, restored_gc: None) -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    app = create_app(base_settings(tmp_path, tune_gc=tune))
    async with app.router.lifespan_context(app):
        assert (gc.get_freeze_count() > 0) is tune
        assert gc.get_threshold() == (GC_THRESHOLDS if tune else (700, 10, 10))
