"""Errors the package raises for problems a user can fix.

The CLI prints these as one clear message (no traceback) and exits with status 2;
anything else is a bug and keeps its traceback.
"""


class KandelError(Exception):
    """A problem with the user's input, data, weights or environment."""


class DataError(KandelError):
    """The data on disk is missing, malformed or inconsistent."""


class WeightsUnavailable(KandelError):
    """Pretrained weights could not be loaded (for example no internet)."""


class ConfigError(KandelError):
    """An option value is invalid or contradicts an existing run."""
