"""The errors a user can cause. The CLI turns each into one line on stderr and exit code 2."""


class TiergateError(Exception):
    """Base for errors whose message is meant for the user as it is."""

    exit_code = 2


class ConfigError(TiergateError):
    """A bad value in [tool.tiergate] or on the command line."""


class UsageError(TiergateError):
    """A command used the wrong way (missing file, bad flag combination)."""


class InputError(TiergateError):
    """An input file (JUnit, events, results dir) that cannot be read."""
