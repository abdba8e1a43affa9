"""A pytest plugin: the suite runs on several processes (pytest-xdist), sharing the services safely.

Tests on SQLite, in memory or on servers of their own are independent of each other and run on
whichever worker is free. The tests on the configured PostgreSQL (`keel_test`) and Redis (db 15)
empty them as they start, so two at once would see each other's rows: they form one unit of
work, which runs on a single worker, in collection order, as a run without workers would run them.

Which tests those are is known only where the tests are collected, on the workers (a test's
parameters and the fixtures it needs, however deep); the controller, which schedules, sees node
ids. So each worker writes the ids of its shared-services tests to a file in a folder the
controller gives it, and the controller's scheduler reads them before it splits the work.

(pytest-xdist's own `--dist loadgroup` does this with a marker, but it renames the node ids
through an attribute pytest 9 no longer reads, so on pytest 9 it groups nothing.)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

SHARED_SERVICES = "shared-services"
# A parameter with one of these values puts the test on the shared services (`backend`, and the
# fixtures parametrized over where things are kept).
SHARED_PARAMS = frozenset({"postgres", "redis"})
# Fixtures that reach the shared services, however deep among a test's fixtures.
SHARED_FIXTURES = frozenset({"postgres_url", "redis_url", "redis"})
FOLDER = "keel_shared_services_folder"


# Modules whose tests share one costly server (`keel serve` and a browser, a module each): a
# module is one unit of work, so its server starts once.
ONE_UNIT_MODULES = "tests/browser/"


def uses_shared_services(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and any(
        isinstance(value, str) and value in SHARED_PARAMS for value in callspec.params.values()
    ):
        return True
    return bool(SHARED_FIXTURES.intersection(getattr(item, "fixturenames", ())))


class Plugin:
    def __init__(self) -> None:
        self.folder: Path | None = None

    # --- on the controller -------------------------------------------------------------------
    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="keel-xdist-"))
        node.workerinput[FOLDER] = str(self.folder)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        from xdist.scheduler import LoadScopeScheduling

        plugin = self

        class SharedServicesScheduling(LoadScopeScheduling):  # type: ignore[misc]
            """Each test a unit of its own, except the shared-services tests (one unit) and the
            tests of a module that shares a server (a unit a module)."""

            shared: frozenset[str] | None = None

            def _split_scope(self, nodeid: str) -> str:
                if self.shared is None:
                    self.shared = plugin.shared_node_ids()
                if nodeid in self.shared:
                    return SHARED_SERVICES
                if nodeid.startswith(ONE_UNIT_MODULES):
                    return nodeid.split("::", 1)[0]
                return nodeid

        return SharedServicesScheduling(config, log)

    def shared_node_ids(self) -> frozenset[str]:
        # Every worker collected the same tests (xdist checks that before it schedules).
        assert self.folder is not None
        found: set[str] = set()
        for path in self.folder.glob("*.txt"):
            found.update(path.read_text().splitlines())
        return frozenset(found)

    @pytest.hookimpl
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.folder is not None:
            for path in self.folder.glob("*.txt"):
                path.unlink()
            self.folder.rmdir()

    # --- on a worker ----------------------------------------------------------------------------
    @pytest.hookimpl(trylast=True)  # after -k and -m have deselected what they deselect
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        workerinput = getattr(config, "workerinput", None)
        if workerinput is None or FOLDER not in workerinput:
            return
        shared = [item.nodeid for item in items if uses_shared_services(item)]
        path = Path(workerinput[FOLDER]) / f"{workerinput['workerid']}.txt"
        temporary = path.with_suffix(".part")
        temporary.write_text("\n".join(shared))
        os.replace(temporary, path)
