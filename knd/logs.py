"""One log format for every command: `knd -v` for details, `knd -q` for warnings only.

Modules log through `logging.getLogger(__name__)` (loggers under `knd`); the CLI gives that tree
its one handler, on stderr, so stdout carries only a command's result (`knd predict --format
json | jq`). Lines are written through tqdm, so they never tear a progress bar.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LEVELS = {"quiet": logging.WARNING, "normal": logging.INFO, "verbose": logging.DEBUG}


@contextmanager
def setup(level: int) -> Iterator[None]:
    """While it lasts, the `knd` loggers write to stderr (through tqdm) from `level` up."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    logger = logging.getLogger("knd")
    saved = logger.handlers[:], logger.level, logger.propagate
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT, "%H:%M:%S"))
    logger.handlers[:], logger.propagate = [handler], False  # one line, whatever root has
    logger.setLevel(level)
    try:
        with logging_redirect_tqdm([logger]):
            yield
    finally:  # a command run in-process (tests, notebooks) leaves the logging as it found it
        logger.handlers[:], logger.propagate = saved[0], saved[2]
        logger.setLevel(saved[1])
