"""The layers import downwards only: `keel.core` knows nothing of the web framework or of the
layers built on it, so it can be read, tested and reused without them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import keel

PACKAGE = Path(keel.__file__).parent
# What each layer may not import: the framework, and every layer above it.
FORBIDDEN = {
    "core": ("fastapi", "starlette", "uvicorn.middleware", "keel.http", "keel.routes", "keel.services", "keel.deps"),
    "http": ("keel.routes", "keel.services", "keel.deps"),
}


def imported(path: Path) -> set[str]:
    """Every module a file imports, at any depth (functions too: a lazy import is still a dependency)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(layer: str) -> None:
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files, layer
    wrong = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in files
        for name in imported(path)
        if any(name == banned or name.startswith(f"{banned}.") for banned in FORBIDDEN[layer])
    }
    assert wrong == set()
