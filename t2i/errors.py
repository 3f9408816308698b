"""Errors a user can fix, as opposed to bugs.

The command line prints a :class:`UserError` as one line on stderr and exits with status 1; ``--debug`` or
``T2I_DEBUG=1`` shows the traceback. Anything else is a bug and keeps its traceback. Each subclass is also the
built-in exception it refines, so ``except ValueError`` / ``FileNotFoundError`` still catch them.
"""


class UserError(Exception):
    """A bad setting, a missing asset, or a run folder that cannot be used as asked; the message says the fix."""


class ConfigError(UserError, ValueError):
    """A config field or override out of its range, of the wrong type, or unknown."""


class MissingAsset(UserError, FileNotFoundError):
    """Data or weights that are not on disk, where a compute node without internet cannot fetch them."""


class RunError(UserError, ValueError):
    """A run folder that cannot be used as asked: not a run, trained with another config, no usable checkpoint."""
