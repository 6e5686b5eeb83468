"""The demo's one exception.

``DemoError`` carries one sentence for the user; ``banditlake demo`` prints it without a
traceback and exits with status 2.
"""

from __future__ import annotations

from api.errors import CommandError

__all__ = ["DemoError"]


class DemoError(CommandError):
    """The demo cannot go on; the message says why in one sentence."""
