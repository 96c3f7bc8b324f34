"""Exceptions secsplit raises at its boundaries, so callers never see errors from deep inside torch."""


class SecsplitError(Exception):
    """Base class of every error secsplit raises on purpose."""


class ConfigError(SecsplitError, ValueError):
    """A bad name, value or combination of settings given by the user."""


class UnknownNameError(ConfigError):
    """A registry was asked for a name it does not hold."""


class DataError(SecsplitError, ValueError):
    """A data file or array is missing, corrupted or has the wrong shape."""


class ChannelError(SecsplitError):
    """A message between parties was malformed, oversized or unexpected."""


class TrainingStopped(SecsplitError):
    """Raised by a callback to end training early on purpose (e.g. a detected hijack); the Trainer
    records the reason in its summary and stops cleanly."""
