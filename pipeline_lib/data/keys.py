"""When two texts count as the same text: one normalised key for de-duplication, conflicts and the leak check."""

from __future__ import annotations


def text_key(text: str) -> str:
    """The key two texts share when they are the same text: lower-cased, whitespace collapsed."""
    return " ".join(str(text).lower().split())
