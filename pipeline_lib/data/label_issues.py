"""Labels worth trusting: likely mislabelled rows found by confident learning (cleanlab) on out-of-sample
probabilities from a linear model over sentence embeddings of the run's own encoder.

Every text is embedded once per encoder (mean pooling over the encoder's middle and last layers, length-sorted
batches, kept in a bank under the store's cache, so a grown dataset embeds only its new rows; `max_new` bounds what
one check embeds, the rest waiting for later checks), a logistic regression is fitted in K
seeded stratified folds so that every row gets probabilities from a model that never saw it, and
`cleanlab.filter.find_label_issues` flags the rows whose given label the others contradict, ranked by
self-confidence (the probability of the given label: low is suspect).
Classification only: for NER a per-token check would need a token classifier's out-of-sample probabilities, which
cost a training run per fold (the validate step says so and skips it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

EMBED_BATCH = 64
EMBEDDING_VERSION = "2"  # bump when the pooling or normalisation changes
# the probe and the filter: chosen on FPB AllAgree with 5 % planted flips (C 0.3-100, four cleanlab filters, last
# vs middle + last layer); `confident_learning` (the confident joint's off-diagonal) gave the fewest false flags
PROBE_C = 1.0
COLUMNS = ["split", "row", "text", "label", "suggested", "score", "suggested_probability"]


@dataclass
class LabelCheck:
    """The outcome of one check: the flagged rows (`COLUMNS`, most suspect first) and what it cost."""

    issues: pd.DataFrame
    checked: int
    embed_seconds: float
    fit_seconds: float
    embeddings_cached: int  # texts whose embedding the bank already held
    unchecked: int = 0  # rows left out: not embedded yet (over `max_new`), for a later check
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return round(self.embed_seconds + self.fit_seconds, 3)


def encoder_key(model_source: str, max_length: int, precision: str = "fp32") -> str:
    """Which embeddings a bank holds: the encoder at `model_source` (its weights' names, sizes and mtimes for a local
    folder, its name for a hub id), the truncation length and the precision they were computed in."""
    source = Path(model_source)
    weights = sorted(source.glob("*.safetensors")) + sorted(source.glob("*.bin")) if source.is_dir() else []
    model_id = "|".join(f"{w.name}:{w.stat().st_size}:{int(w.stat().st_mtime)}" for w in weights) or model_source
    suffix = "" if precision == "fp32" else f"|{precision}"  # fp32 banks keep their key
    return hashlib.sha256(f"{model_id}|{max_length}|{EMBEDDING_VERSION}{suffix}".encode()).hexdigest()[:24]


def embedding_precision() -> str:
    """bf16 where the CPU computes it natively (AMX or AVX-512 BF16: about 2x fp32's speed on AMX, every vector's
    cosine to its fp32 twin above 0.9999 on PhraseBank, features for a linear probe), else fp32."""
    from pipeline_lib.hardware import cpu_bf16_flags

    return "bf16" if cpu_bf16_flags() else "fp32"


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def embed(
    texts: list[str], model_source: str, max_length: int = 128, threads: int | None = None, precision: str = "fp32"
) -> np.ndarray:
    """Sentence embeddings (float32, one row per text, in order): the mean-pooled, L2-normalised hidden states of the
    encoder's middle layer and of its last, side by side (a linear probe on both finds planted mislabels with fewer
    false flags than on the last alone: bench/label_issues.py). Length-sorted batches padded only to each batch's
    longest text, inference mode, every core; `precision` bf16 runs the encoder under CPU bf16 autocast."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    if threads:
        torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(model_source)
    model = AutoModel.from_pretrained(model_source).eval()
    encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    order = np.argsort([len(ids) for ids in encoded], kind="stable")
    width = model.config.hidden_size
    middle = max(1, model.config.num_hidden_layers // 2)
    out = np.zeros((len(texts), 2 * width), dtype=np.float32)
    pad = tokenizer.pad_token_id or 0
    bf16 = precision == "bf16"
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(order), EMBED_BATCH):
            rows = order[start : start + EMBED_BATCH]
            longest = max(len(encoded[i]) for i in rows)
            ids = torch.full((len(rows), longest), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), longest), dtype=torch.long)
            for j, i in enumerate(rows):
                ids[j, : len(encoded[i])] = torch.tensor(encoded[i])
                mask[j, : len(encoded[i])] = 1
            states = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            weights = mask.unsqueeze(-1).float()
            pooled = [(states[layer].float() * weights).sum(1) / weights.sum(1).clamp(min=1) for layer in (middle, -1)]
            out[rows] = torch.cat([torch.nn.functional.normalize(p, dim=-1) for p in pooled], -1).float().numpy()
    return out


def cached_embeddings(
    texts: list[str], model_source: str, cache_dir: Path, max_length: int = 128, max_new: int | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """`embed(texts)`, each text embedded once per encoder: a bank per encoder (`cache_dir/embeddings/KEY.npz`, text
    digests and vectors) serves the texts it holds, only the others are embedded and then added to it (written
    atomically). New rows of a growing dataset cost their own embedding only; with `max_new`, at most that many
    texts are embedded (the first by digest: a fixed sample that later calls extend). Embedded in bf16 where the CPU
    has it (`embedding_precision`; its own bank). Returns the vectors (zeros where not embedded), which rows have one,
    and how many came from the bank."""
    precision = embedding_precision()
    bank_path = cache_dir / "embeddings" / f"{encoder_key(model_source, max_length, precision)}.npz"
    digests = [text_digest(text) for text in texts]
    known: dict[str, int] = {}
    stored_keys, stored = np.array([], dtype=str), None
    if bank_path.is_file():
        with np.load(bank_path) as bank:
            stored_keys, stored = bank["keys"], bank["vectors"]
        known = {key: i for i, key in enumerate(stored_keys.tolist())}
    first_row = {d: i for i, d in enumerate(digests) if d not in known}
    chosen = sorted(first_row)[:max_new] if max_new is not None else list(first_row)
    missing = sorted(first_row[d] for d in chosen)
    fresh = embed([texts[i] for i in missing], model_source, max_length, precision=precision) if missing else None
    width = stored.shape[1] if stored is not None else fresh.shape[1] if fresh is not None else 0
    out = np.zeros((len(texts), width), dtype=np.float32)
    has = np.zeros(len(texts), dtype=bool)
    new_rows = {digests[i]: j for j, i in enumerate(missing)}
    for row, digest in enumerate(digests):
        if digest in known:
            out[row], has[row] = stored[known[digest]], True  # type: ignore[index]
        elif digest in new_rows:
            out[row], has[row] = fresh[new_rows[digest]], True  # type: ignore[index]
    if fresh is not None:
        keys = np.concatenate([stored_keys, np.array([digests[i] for i in missing])])
        vectors = fresh if stored is None else np.concatenate([stored, fresh])
        bank_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = bank_path.with_name(f".{bank_path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, keys=keys, vectors=vectors)
        tmp.replace(bank_path)
    return out, has, sum(1 for digest in digests if digest in known)


def out_of_sample_probabilities(
    features: np.ndarray, y: np.ndarray, n_labels: int, folds: int, seed: int
) -> np.ndarray:
    """Each row's class probabilities from a logistic regression fitted on the other folds (stratified, seeded);
    every class gets a column, also one too rare to appear in some training fold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    smallest = int(np.bincount(y, minlength=n_labels)[np.bincount(y, minlength=n_labels) > 0].min())
    splitter = StratifiedKFold(n_splits=max(2, min(folds, smallest)), shuffle=True, random_state=seed)
    probs = np.zeros((len(y), n_labels), dtype=np.float64)
    for fit_rows, held_out in splitter.split(features, y):
        model = LogisticRegression(max_iter=3000, C=PROBE_C)
        model.fit(features[fit_rows], y[fit_rows])
        probs[np.ix_(held_out, model.classes_)] = model.predict_proba(features[held_out])
    return probs


def rank_issues(y: np.ndarray, probs: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab's label issues (indices, most suspect first) and every row's self-confidence score."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    flagged = find_label_issues(
        y, probs, filter_by="confident_learning", return_indices_ranked_by="self_confidence", n_jobs=1
    )
    scores = get_label_quality_scores(y, probs, method="self_confidence")
    return np.asarray(flagged, dtype=int), scores


def find_label_issues(
    frame: pd.DataFrame,
    labels: list[str],
    model_source: str,
    cache_dir: Path,
    folds: int = 5,
    seed: int = 42,
    max_length: int = 128,
    max_new: int | None = None,
    min_rows: int = 20,
) -> LabelCheck:
    """Flag the rows of `frame` (columns split, row, text, label; source kept when given) whose label the other rows
    contradict. With `max_new`, only rows whose embedding the bank holds or that are among the `max_new` embedded now
    are checked (`LabelCheck.unchecked` counts the others)."""
    start = time.perf_counter()
    texts = frame["text"].astype(str).tolist()
    vectors, has, cached = cached_embeddings(texts, model_source, cache_dir, max_length, max_new)
    embedded = time.perf_counter()
    unchecked = int((~has).sum())
    frame, vectors = frame[has], vectors[has]
    index = {label: i for i, label in enumerate(labels)}
    y = frame["label"].astype(str).map(index).to_numpy()
    notes = []
    if len(frame) >= min_rows and (np.bincount(y.astype(int)) >= 2).sum() >= 2:
        probs = out_of_sample_probabilities(vectors, y.astype(int), len(labels), folds, seed)
        flagged, scores = rank_issues(y.astype(int), probs, seed)
    else:  # a first bounded check of a large dataset may embed too few rows for a probe
        probs, flagged, scores = np.zeros((len(frame), len(labels))), np.array([], dtype=int), np.zeros(len(frame))
        notes.append(f"{len(frame)} rows embedded so far: fewer than {min_rows} or one label, none checked yet")
        unchecked, frame = unchecked + len(frame), frame.iloc[:0]
    suggested = probs.argmax(1)
    issues = frame.iloc[flagged][[c for c in ("split", "source", "row", "text", "label") if c in frame]].copy()
    issues["suggested"] = [labels[i] for i in suggested[flagged]]
    issues["score"] = scores[flagged].round(6)
    issues["suggested_probability"] = probs[flagged, suggested[flagged]].round(6)
    return LabelCheck(
        issues=issues.reset_index(drop=True),
        checked=len(frame),
        embed_seconds=round(embedded - start, 3),
        fit_seconds=round(time.perf_counter() - embedded, 3),
        embeddings_cached=cached,
        unchecked=unchecked,
        notes=notes,
    )


def keys_digest(keys: list[str]) -> str:
    """A digest of dropped rows' keys (sorted), recorded in lineage."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


def pair_counts(issues: pd.DataFrame) -> dict[str, int]:
    """Flagged rows per given → suggested pair, most frequent first."""
    counts = issues.groupby(["label", "suggested"]).size().sort_values(ascending=False)
    return {f"{given} → {suggested}": int(n) for (given, suggested), n in counts.items()}


def describe(check: LabelCheck) -> dict[str, Any]:
    return {
        "checked": check.checked,
        "unchecked": check.unchecked,
        "flagged": len(check.issues),
        "by_split": {str(k): int(v) for k, v in check.issues["split"].value_counts().items()},
        "pairs": pair_counts(check.issues),
        "embed_seconds": check.embed_seconds,
        "fit_seconds": check.fit_seconds,
        "embeddings_cached": check.embeddings_cached,
        "notes": check.notes,
    }
