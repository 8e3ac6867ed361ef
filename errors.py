"""The project's error base class: what the command line reports as one line.

Every error we raise on purpose for a user to act on (bad input, missing data, an unreachable
server, an illegal architecture) derives from `CollmNasError`. Anything else is a bug and is shown
with its traceback.
"""

from __future__ import annotations


class CollmNasError(Exception):
    """A problem the user can fix; its message says what and how."""
