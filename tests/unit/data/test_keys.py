"""The normalised key: which texts count as the same text."""

from __future__ import annotations

import pytest

from pipeline_lib.data.keys import key_digest, text_digests, text_key, unit_interval


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("@united Thank You", "@united thank you"),  # case
        ("Profit  rose\t5 %", " profit rose 5 % "),  # whitespace runs, tabs, ends
        ("Ｐｒｏｆｉｔ ＵＰ", "profit up"),  # full-width letters (NFKC)
        ("ﬁnal results", "final results"),  # ligature (NFKC)
        ("Straße", "STRASSE"),  # case folding, not just lower()
        ("pro\u200bfit\u00ad up", "profit up"),  # zero-width space and soft hyphen are invisible
    ],
)
def test_variants_of_one_text_share_a_key(a: str, b: str) -> None:
    assert text_key(a) == text_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [("Profit fell.", "Profit fell?"), ("EUR 1.5 mn", "EUR 15 mn"), ("not good", "good"), ("café", "cafe")],
)
def test_punctuation_digits_and_accents_count(a: str, b: str) -> None:
    assert text_key(a) != text_key(b)


def test_digests_and_unit_interval_are_stable() -> None:
    assert text_digests(["A b", "a  B"]) == [key_digest("a b")] * 2
    assert len(key_digest("x")) == 16
    assert unit_interval("a b", 42) == unit_interval("a b", 42)
    assert unit_interval("a b", 42) != unit_interval("a b", 43)
    values = [unit_interval(str(i), 0) for i in range(2000)]
    assert min(values) >= 0 and max(values) < 1 and abs(sum(values) / len(values) - 0.5) < 0.03


def test_the_ascii_shortcut_gives_the_full_normalisation() -> None:
    """ASCII texts skip NFKC and the format-character filter: the key must be the one the full path gives."""
    import random
    import unicodedata

    def full(text: str) -> str:
        folded = unicodedata.normalize("NFKC", text)
        visible = "".join(ch for ch in folded if unicodedata.category(ch) != "Cf")
        return " ".join(visible.casefold().split())

    rng = random.Random(0)
    alphabet = [chr(i) for i in range(128)]  # every ASCII character: controls, separators, letters, digits
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(2000)]
    texts += ["Profit  ROSE\tto EUR 3.1 mn\x1c", "\x0b\x0c a \x1f b \x1e", ""]
    assert all(text.isascii() for text in texts)
    assert [text_key(text) for text in texts] == [full(text) for text in texts]
    assert text_key("ＰＲＯＦＩＴ\u200b rose") == text_key("profit rose")  # not ASCII: the full path
