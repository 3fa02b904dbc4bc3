"""Errors that end a command with a message rather than a traceback (the CLI maps each to an exit code)."""

from __future__ import annotations


class ConfigError(ValueError):
    """An invalid config or CLI input; the message is one line naming the field."""


class SearchStopped(RuntimeError):
    """The search could not go on (e.g. its tracking server stayed away); the message says what is kept where."""


class ConfigDeprecation(FutureWarning):
    """An old form of a config value that still loads; the message is one line saying what to write instead.
    A FutureWarning, not a DeprecationWarning: it is meant for the user who wrote the config, and Python shows
    those by default (the CLI prints each as one `note:` line)."""
