"""Each test row is scored once per graph: what is held is not scored again, and saved rows are taken only for the
graph and split they were scored on."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline_lib.runtime.scored_rows import ScoredRows


def counting_scorer(calls: list[list[str]]):
    def predict(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[len(text), text.count("a")] for text in texts], dtype=np.float32)

    return predict


def test_rows_held_are_not_scored_again_and_come_back_in_the_order_asked() -> None:
    texts = ["alpha", "beta gamma", "delta", "a", "banana"]
    calls: list[list[str]] = []
    scored = ScoredRows(counting_scorer(calls), texts)
    scored.add([1], np.array([[-1.0, -1.0]]))  # e.g. what the parity sample computed
    first = scored.logits([3, 1, 0])
    np.testing.assert_array_equal(first, [[1, 1], [-1, -1], [5, 2]])
    assert calls == [["alpha", "a"]]  # only the rows not held, in one call
    whole = scored.logits()
    assert calls[1:] == [["delta", "banana"]] and scored.rows == len(texts)
    np.testing.assert_array_equal(whole[[2, 4]], [[5, 1], [6, 3]])
    scored.logits([4, 4, 0])
    assert len(calls) == 2  # everything held: nothing scored


def test_saved_rows_are_taken_only_for_the_same_graph_and_split(tmp_path: Path) -> None:
    texts = ["one", "two", "three"]
    graph, split = tmp_path / "model.onnx", tmp_path / "test.parquet"
    graph.write_bytes(b"graph-1")
    split.write_bytes(b"split-1")
    saved = ScoredRows(counting_scorer([]), texts)
    saved.logits([0, 2])
    saved.save(tmp_path / "scored.npz", graph, split)

    calls: list[list[str]] = []
    again = ScoredRows(counting_scorer(calls), texts)
    assert again.load(tmp_path / "scored.npz", graph, split) == 2
    np.testing.assert_array_equal(again.logits(), [[3, 0], [3, 0], [5, 0]])
    assert calls == [["two"]]

    graph.write_bytes(b"graph-2")  # re-exported: other weights, other logits
    assert ScoredRows(counting_scorer([]), texts).load(tmp_path / "scored.npz", graph, split) == 0
    graph.write_bytes(b"graph-1")
    split.write_bytes(b"split-2")  # another test split
    assert ScoredRows(counting_scorer([]), texts).load(tmp_path / "scored.npz", graph, split) == 0
    assert ScoredRows(counting_scorer([]), texts).load(tmp_path / "missing.npz", graph, split) == 0
