"""When two texts count as the same text: one normalised key, used by de-duplication, conflict detection, the
leak check across splits, the split itself and the champion-overlap check of the gates.

The key is the text in Unicode NFKC (full-width letters, ligatures and other compatibility forms folded), without
invisible format characters (zero-width spaces and joiners, soft hyphens, BOMs), case-folded, with every run of
whitespace collapsed to one space. Punctuation and digits count: "Profit fell." and "Profit fell?" are different
texts, and so are "1.5" and "15". Mojibake is not repaired here: `data.fix_text` does that before the key is taken.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable

KEY_VERSION = "nfkc-casefold-ws-v1"  # recorded in lineage; bump when `text_key` changes meaning


def text_key(text: str) -> str:
    """The key two texts share exactly when they are the same text."""
    text = str(text)
    if text.isascii():  # NFKC leaves ASCII as it is, and ASCII has no format characters
        return " ".join(text.casefold().split())
    folded = unicodedata.normalize("NFKC", text)
    visible = "".join(ch for ch in folded if unicodedata.category(ch) != "Cf")
    return " ".join(visible.casefold().split())


def key_digest(key: str) -> str:
    """A short, stable digest of a key (64 bits of SHA-256, hex): what lineage stores instead of the text."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def text_digests(texts: Iterable[str]) -> list[str]:
    """`key_digest(text_key(t))` for each text, in order."""
    return [key_digest(text_key(text)) for text in texts]


def unit_interval(key: str, seed: int) -> float:
    """A number in [0, 1) that depends only on the key and the seed (SHA-256, not Python's salted `hash`)."""
    digest = hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
