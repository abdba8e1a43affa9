"""Folders and files only Keel's own user may read: the data folder holds the SQLite database, the
generated development secret and, with file mail, messages carrying live sign-in links.

The modes are given when each thing is created, not fixed with chmod afterwards, so there is no
moment in which another user could open it. A folder or file that already exists keeps its mode:
it may be the operator's choice.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` and whichever of its parents are missing, each readable by its owner only."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        # Another process (a second worker) may create it at the same moment.
        folder.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    return path


def create_private_file(path: Path) -> bool:
    """Create an empty file readable by its owner only, in a private folder; ``False`` if it exists."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def write_private_file(path: Path, data: bytes) -> None:
    """Write a new file readable by its owner only; an existing file at `path` is an error."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
