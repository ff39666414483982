"""Test rows scored once per graph: the export step asks one graph for overlapping rows of the test split (the parity
sample, the candidates' sample, the chosen graph's whole-split check) and the evaluate step then asks the served
graph for every row. `ScoredRows` keeps each row's logits and scores only the rows it does not hold yet; the export
step saves the served graph's to the run directory under a key of the graph's and the split's bytes, so evaluate
scores only the rest (none, when the whole split was checked)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from pipeline_lib.data.versions import file_md5


class ScoredRows:
    """One graph's logits on rows of one list of texts, by row index; `logits(rows)` scores the missing ones only."""

    def __init__(self, predict: Callable[[list[str]], np.ndarray], texts: list[str]) -> None:
        self.predict = predict
        self.texts = texts
        self.held: dict[int, np.ndarray] = {}

    def add(self, rows: Iterable[int], logits: np.ndarray) -> None:
        for row, values in zip(rows, logits, strict=True):
            self.held[int(row)] = np.asarray(values)

    def logits(self, rows: Iterable[int] | None = None) -> np.ndarray:
        """Logits of `rows` (default: every text), in that order; rows not held are scored now, in one call."""
        wanted = [int(row) for row in (range(len(self.texts)) if rows is None else rows)]
        missing = sorted({row for row in wanted if row not in self.held})
        if missing:
            self.add(missing, self.predict([self.texts[row] for row in missing]))
        if not wanted:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self.held[row] for row in wanted])

    @property
    def rows(self) -> int:
        return len(self.held)

    def save(self, path: Path, graph: Path, split: Path) -> None:
        """Keep the held rows for the evaluate step, under a key of `graph`'s and `split`'s bytes."""
        rows = np.array(sorted(self.held), dtype=np.int64)
        logits = np.stack([self.held[row] for row in rows.tolist()]) if len(rows) else np.zeros((0, 0), np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, rows=rows, logits=logits, key=np.array(scored_key(graph, split)))
        tmp.replace(path)

    def load(self, path: Path, graph: Path, split: Path) -> int:
        """Take the rows saved at `path` when they were scored by this `graph` on this `split`; how many were taken."""
        if not path.is_file():
            return 0
        with np.load(path) as saved:
            if str(saved["key"]) != scored_key(graph, split):
                return 0
            rows, logits = saved["rows"], saved["logits"]
        if len(rows) and int(rows.max()) >= len(self.texts):
            return 0
        self.add(rows.tolist(), logits)
        return len(rows)


def scored_key(graph: Path, split: Path) -> str:
    return f"{file_md5(graph)}|{file_md5(split)}"
