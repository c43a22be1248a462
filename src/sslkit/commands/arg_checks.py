"""Checks of numeric command-line options, run before a verb loads or writes anything.

Each raises :class:`sslkit.config.ConfigError` with one sentence naming the option as the user typed it.
An option is named by its ``args`` attribute (``"batch_size"`` is ``--batch-size``), or by a pair
``(attribute, flag)`` when the two differ (``("weight_decay", "--wd")``).
"""

from __future__ import annotations


def _named(args, option) -> tuple:
    name, flag = option if isinstance(option, tuple) else (option, "--" + option.replace("_", "-"))
    return getattr(args, name), flag


def at_least(args, minimum: float, *options) -> None:
    """Every option given (not None) is >= ``minimum``."""
    from sslkit.config import ConfigError

    for option in options:
        value, flag = _named(args, option)
        if value is not None and not value >= minimum:
            raise ConfigError(f"{flag} must be >= {minimum:g}, got {value:g}.")


def positive(args, *options) -> None:
    """Every option given (not None) is > 0."""
    from sslkit.config import ConfigError

    for option in options:
        value, flag = _named(args, option)
        if value is not None and not value > 0:
            raise ConfigError(f"{flag} must be > 0, got {value:g}.")


def fraction(args, option) -> None:
    """The option lies strictly between 0 and 1 (a held-out share)."""
    from sslkit.config import ConfigError

    value, flag = _named(args, option)
    if not 0 < value < 1:
        raise ConfigError(f"{flag} must be between 0 and 1 (exclusive), got {value:g}.")
