"""One exception type for every failure a user can fix.

The CLI prints a `KndError` as a single readable line and exits non-zero;
anything else is a bug and keeps its traceback.
"""


class KndError(Exception):
    """A failure caused by input, configuration or environment, with a message saying what to do."""
