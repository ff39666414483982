"""Long texts, before they are tokenized: cut to what the model's `max_length` tokens can use, or refused.

The tokenizer reads a whole text before truncating it (a 5 MB text costs seconds), yet the model only sees its
first `max_length` tokens. A WordPiece token covers at most `max_input_chars_per_word` characters of a word (a
longer word is one unknown token) plus the space before it, so `max_length x (that + 1)` characters hold every
token the model can see, in practice (only runs of many spaces or words over that length between them fit fewer):
`truncate` cuts texts there, which leaves the tokens the model sees unchanged; `refuse` rejects any text with
more than `max_length` tokens (one over the character bound without tokenizing it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

DEFAULT_WORD_CHARS = 100  # WordPiece's default max_input_chars_per_word, and a bound for other tokenizers' tokens


class TextTooLong(ValueError):
    """A text is longer than the model can use and `long_text` is `refuse`."""


def max_word_chars(tokenizer_json: Path) -> int:
    """The most characters one token can cover, read from the tokenizer's own settings."""
    try:
        model = json.loads(Path(tokenizer_json).read_text(encoding="utf-8")).get("model", {})
    except (OSError, ValueError):
        return DEFAULT_WORD_CHARS
    chars = model.get("max_input_chars_per_word") if isinstance(model, dict) else None
    return int(chars) if isinstance(chars, int) and chars > 0 else DEFAULT_WORD_CHARS


class LongTexts:
    """Cut or refuse long texts for a model folder (`tokenizer.json`) that sees `max_length` tokens."""

    def __init__(self, folder: Path, max_length: int, mode: Literal["truncate", "refuse"] = "truncate") -> None:
        self.folder = Path(folder)
        self.max_length = max_length
        self.mode = mode
        self.max_chars = max_length * (max_word_chars(self.folder / "tokenizer.json") + 1)
        self._counter: Any = None  # an untruncating tokenizer, loaded on the first `refuse` check

    def prepare(self, texts: Sequence[str]) -> list[str]:
        """`texts` ready for the predictor: cut at `max_chars` (truncate), or unchanged after checking that each
        fits in `max_length` tokens (refuse: `TextTooLong` names the first text that does not)."""
        if self.mode == "truncate":
            return [text if len(text) <= self.max_chars else text[: self.max_chars] for text in texts]
        for i, text in enumerate(texts):
            if len(text) > self.max_chars:
                raise TextTooLong(
                    f"texts[{i}] has {len(text)} characters, more than the {self.max_chars} that model.max_length="
                    f"{self.max_length} tokens can use; shorten it, or serve with serve.long_text: truncate"
                )
            tokens = len(self._tokenizer().encode(text).ids)
            if tokens > self.max_length:
                raise TextTooLong(
                    f"texts[{i}] has {tokens} tokens, more than model.max_length={self.max_length}; shorten it, or "
                    "serve with serve.long_text: truncate"
                )
        return list(texts)

    def _tokenizer(self) -> Any:
        if self._counter is None:
            from tokenizers import Tokenizer

            self._counter = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
            self._counter.no_truncation()
            self._counter.no_padding()
        return self._counter
