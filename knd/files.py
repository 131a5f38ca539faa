"""Outputs written whole or not at all.

A stage killed mid-write, or a reader racing a writer (DVC, a second `knd` command, a user
opening the report), must meet either the previous output or the new one, never half of one.
"""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A sibling of `path` (`<name>.tmp`) to write instead, file or folder.

    It takes `path`'s place when the block finishes and is removed when the block raises, so
    nothing half-written is left under either name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    _remove(tmp)  # left by a killed run
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if tmp.is_dir():  # a folder cannot be renamed over a full one: set the old one aside first
        old = path.with_name(path.name + ".old")
        _remove(old)
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        _remove(old)
    else:
        tmp.replace(path)


def replace_text(path: str | Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
