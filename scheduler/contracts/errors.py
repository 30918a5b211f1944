"""The one user-error base class.

Everything a user controls (a config, a weather file, a jobs or caps table, a plan directory, a
port, a database) is refused with a :class:`UserError` whose message names the file and the
row, column or field. The command line catches it once, prints the message and exits with
code 2; anything else reaching the top is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(ValueError):
    """Input the user must fix; the message says where and what is allowed."""
