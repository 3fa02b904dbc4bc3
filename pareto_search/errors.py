"""Errors that end a command with a message rather than a traceback (the CLI maps each to an exit code)."""

from __future__ import annotations


class ConfigError(ValueError):
    """An invalid config or CLI input; the message is one line naming the field."""


class SearchStopped(RuntimeError):
    """The search could not go on (e.g. its tracking server stayed away); the message says what is kept where."""
