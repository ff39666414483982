"""Validation rules for tagged sentences (token classification), run with Great Expectations.

Per sentence: `tokens_tags_length` (as many tags as tokens), `sentence_not_empty`, `sentence_length` (at most
`data.max_tokens` words). Per token: `tag_in_set` (in `data.labels`), `tag_iob2` (an `I-X` continues an `X`
entity; IOB1 input was converted before), `token_not_blank` (a word without whitespace). Across splits
(pandas): `text_in_two_splits` (in `cross_split`), `split_not_empty`, `label_in_train` (every entity type
of `data.labels` in train).
Each failure names the file, the sentence (its first line) and the token (position and text).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipeline_lib.config import DataConfig
from pipeline_lib.data.conll import entity_types, iob2_errors
from pipeline_lib.data.cross_split import empty_splits
from pipeline_lib.data.failures import ValidationFailure, snippet
from pipeline_lib.data.gx import gx_definition, import_gx

SENTENCE_RULES = ("tokens_tags_length", "sentence_not_empty", "sentence_length")


def sentence_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per sentence (same index as `frame`): token and tag counts."""
    return pd.DataFrame(
        {"n_tokens": frame["tokens"].map(len), "n_tags": frame["tags"].map(len)},
        index=frame.index,
    )


def token_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per token position: `sentence` (index into `frame`), `position`, `token`, `tag` and `iob2`
    ("valid" / "invalid"); a position past the end of the tokens or of the tags holds None there."""
    rows = []
    for index, tokens, tags in zip(frame.index, frame["tokens"], frame["tags"], strict=True):
        tokens, tags = list(tokens), list(tags)
        bad = set(iob2_errors(tags))
        for i in range(max(len(tokens), len(tags))):
            rows.append(
                (
                    index,
                    i,
                    tokens[i] if i < len(tokens) else None,
                    tags[i] if i < len(tags) else None,
                    "invalid" if i in bad else "valid",
                )
            )
    return pd.DataFrame(rows, columns=["sentence", "position", "token", "tag", "iob2"])


def _expectations(data: DataConfig) -> tuple[list[Any], list[Any]]:
    gx = import_gx()

    ex = gx.expectations
    sentences = [
        ex.ExpectColumnPairValuesToBeEqual(column_A="n_tokens", column_B="n_tags", meta={"rule": "tokens_tags_length"}),
        ex.ExpectColumnValuesToBeBetween(column="n_tokens", min_value=1, meta={"rule": "sentence_not_empty"}),
        ex.ExpectColumnValuesToBeBetween(
            column="n_tokens", max_value=data.max_tokens, meta={"rule": "sentence_length"}
        ),
    ]
    tokens = [
        ex.ExpectColumnValuesToBeInSet(column="tag", value_set=data.label_names, meta={"rule": "tag_in_set"}),
        ex.ExpectColumnValuesToBeInSet(column="iob2", value_set=["valid"], meta={"rule": "tag_iob2"}),
        ex.ExpectColumnValuesToMatchRegex(column="token", regex=r"^\S+$", meta={"rule": "token_not_blank"}),
    ]
    return sentences, tokens


def check_tagged_splits(
    splits: dict[str, pd.DataFrame], data: DataConfig
) -> tuple[dict[str, Any], list[ValidationFailure]]:
    """Run the sentence and token suites on each non-empty split; map failures back to file/sentence/token."""
    sentence_rules, token_rules = _expectations(data)
    by_sentence = gx_definition(f"{data.name}-sentences", sentence_rules)
    by_token = gx_definition(f"{data.name}-tokens", token_rules)
    results: dict[str, Any] = {}
    failures: list[ValidationFailure] = []
    for split, frame in splits.items():
        if frame.empty:
            continue
        sentences, tokens = sentence_frame(frame), token_frame(frame)
        outcomes = {}
        for kind, definition, gx_frame in (("sentences", by_sentence, sentences), ("tokens", by_token, tokens)):
            outcome = definition.run(
                batch_parameters={"dataframe": gx_frame}, result_format={"result_format": "COMPLETE"}
            )
            outcomes[kind] = outcome.to_json_dict()
            for check in outcome.results:
                if not check.success:
                    failures += _failures(check, split, frame, tokens if kind == "tokens" else None, data)
        results[split] = outcomes
    return results, failures


def tag_coverage(splits: dict[str, pd.DataFrame], data: DataConfig) -> list[ValidationFailure]:
    """Every split has sentences; every entity type of `data.labels` starts at least one entity in train."""
    failures = empty_splits(splits, data.path, "check data.files or the split column", "sentences")
    present = {tag[2:] for tags in splits["train"]["tags"] for tag in tags if tag.startswith("B-")}
    for kind in entity_types(data.label_names):
        if kind not in present:
            message = f"no {kind} entity (B-{kind}); expected every entity type in data.labels in train"
            failures.append(ValidationFailure(data.path, None, "train", "label_in_train", message, kind))
    return failures


def _failures(
    check: Any, split: str, frame: pd.DataFrame, tokens: pd.DataFrame | None, data: DataConfig
) -> list[ValidationFailure]:
    rule = check.expectation_config.meta.get("rule", check.expectation_config.type)
    if check.exception_info.get("raised_exception"):
        message = f"Great Expectations raised: {check.exception_info.get('exception_message')}"
        return [ValidationFailure(data.path, None, split, rule, message)]
    failures = []
    for index in check.result.get("unexpected_index_list") or []:
        if tokens is None:
            sentence, where = frame.loc[index], None
        else:
            where = tokens.loc[index]
            sentence = frame.loc[where["sentence"]]
        message = (
            f"sentence at line {sentence['row']}" + _token_part(where) + ": " + _message(rule, sentence, where, data)
        )
        value = str(where["tag"]) if rule == "tag_in_set" and where is not None else None
        failures.append(ValidationFailure(sentence["source"], int(sentence["row"]), split, rule, message, value))
    return failures


def _token_part(where: pd.Series | None) -> str:
    return "" if where is None else f", token {where['position'] + 1} {where['token']!r}"


def _as_written(sentence: pd.Series, where: pd.Series) -> str:
    """The tag as the file has it, when IOB1 conversion changed it (`I-FOO` is checked as `B-FOO`)."""
    written = sentence.get("file_tags")
    position = int(where["position"])
    if written is None or position >= len(written) or written[position] == where["tag"]:
        return ""
    return f"; the file has {written[position]!r}, read as IOB1 (data.tag_scheme)"


def _message(rule: str, sentence: pd.Series, where: pd.Series | None, data: DataConfig) -> str:
    n_tokens, n_tags = len(sentence["tokens"]), len(sentence["tags"])
    text = snippet(sentence["text"])
    if rule == "tokens_tags_length":
        first = min(n_tokens, n_tags)
        odd = (
            f"token {first + 1} {sentence['tokens'][first]!r} has no tag"
            if n_tokens > n_tags
            else f"tag {first + 1} {sentence['tags'][first]!r} has no token"
        )
        return f"{n_tokens} tokens but {n_tags} tags ({odd}); expected one tag per token: {text}"
    if rule == "sentence_not_empty":
        return "sentence has no tokens; expected at least one"
    if rule == "sentence_length":
        return f"sentence has {n_tokens} tokens; expected at most {data.max_tokens} (data.max_tokens): {text}"
    if rule == "tag_in_set" and where is not None:
        return f"tag {where['tag']!r} is not one of {', '.join(data.label_names)} ({data.labels_source})" + _as_written(
            sentence, where
        )
    if rule == "tag_iob2" and where is not None:
        position = int(where["position"])
        previous = sentence["tags"][position - 1] if position else "(sentence start)"
        kind = str(where["tag"])[2:]
        return (
            f"tag {where['tag']!r} follows {previous!r}; in IOB2 an entity starts with 'B-{kind}' "
            f"(data.tag_scheme is {data.tag_scheme}; set iob1 for IOB1 files such as CoNLL-2003)"
        )
    if rule == "token_not_blank":
        return "token is empty or holds whitespace; expected one word without spaces"
    return f"unexpected value in {text}"
