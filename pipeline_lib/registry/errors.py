"""What can go wrong talking to the registry, as the two errors callers catch."""

from __future__ import annotations


class RegistryError(RuntimeError):
    """A registry reference or operation is invalid."""


class RegistryUnavailable(RegistryError):
    """The tracking server stayed unreachable through every attempt; the message says what was left behind."""
