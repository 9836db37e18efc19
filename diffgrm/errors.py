"""One exception type for every problem the user can fix.

The CLI prints a ``DiffGRMError`` as a single ``error: ...`` line and exits non-zero; anything
else is a bug in diffgrm and keeps its traceback.
"""


class DiffGRMError(Exception):
    """A bad input, a missing file or an impossible setting, explained in one line."""
