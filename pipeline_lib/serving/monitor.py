"""`tunepipe monitor NAME@ALIAS`: the served model's logged predictions compared with what it does on its own test
split, feature by feature, with a verdict that cron or CI can act on.

The reference is the version's logged test split (`data/test.parquet`, logged at registration) run through the
version's ONNX graph: predictions against predictions, so a model that favours a label on the test split raises no
alarm for favouring it live. Live is the prediction log (`serving.prediction_log`) of that same version since the
window's start. The features, each with a test from scipy.stats and a threshold in `monitor:`:

- label mix: chi-square test of homogeneity (`chi2_contingency`) of the two label counts; the effect is the largest
  change of one label's share (`max_label_shift`);
- confidence (the top probability): two-sample Kolmogorov-Smirnov (`ks_2samp`), statistic vs `max_confidence_ks`;
- text length in characters: two-sample KS, statistic vs `max_length_ks`;
- low-confidence share (top probability below `low_confidence`): one-sided Fisher exact test that it rose, and the
  rise vs `max_low_confidence_increase`.

A feature drifts when its difference is both significant (p < `p_value`) and at least its threshold; fewer than
`min_predictions` live predictions give no verdict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from pipeline_lib.config import MonitorConfig, PipelineConfig, window_start
from pipeline_lib.registry import store
from pipeline_lib.runtime.predictor import OnnxPredictor
from pipeline_lib.serving.prediction_log import log_folder, read_log

TEST_SPLIT_ARTIFACT = "data/test.parquet"
DRIFT, NO_DRIFT, NOT_ENOUGH = "drift", "no drift", "not enough predictions"


class MonitorError(RuntimeError):
    """Monitoring cannot run (no log, no logged test split, a model it does not apply to); the message says why."""


@dataclass
class Check:
    """One feature compared: the test's statistic and p-value, the effect measured against its threshold."""

    feature: str
    test: str
    statistic: float
    p_value: float
    effect: float
    threshold: float
    drift: bool
    detail: str


@dataclass
class MonitorReport:
    model: str
    name: str
    version: str
    since: str
    log: str
    live: int
    reference: int
    other_versions: int  # predictions of the window made by other versions of the model (not compared)
    verdict: str
    checks: list[Check] = field(default_factory=list)
    reference_labels: dict[str, int] = field(default_factory=dict)  # the test split's true labels, for context

    @property
    def drift(self) -> bool:
        return self.verdict == DRIFT

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "drift": self.drift}


def compare(reference: pd.DataFrame, live: pd.DataFrame, labels: list[str], settings: MonitorConfig) -> list[Check]:
    """Each feature of `live` against `reference` (frames with `label`, `confidence` and `chars` columns)."""
    from scipy import stats

    checks = [_label_mix(reference["label"], live["label"], labels, settings)]
    for feature, column, threshold, unit in (
        ("confidence", "confidence", settings.max_confidence_ks, ""),
        ("length", "chars", settings.max_length_ks, " chars"),
    ):
        ref, now = reference[column].to_numpy(float), live[column].to_numpy(float)
        result = stats.ks_2samp(ref, now)
        quantiles = "/".join(f"{np.quantile(ref, q):.3g}" for q in (0.1, 0.5, 0.9))
        live_quantiles = "/".join(f"{np.quantile(now, q):.3g}" for q in (0.1, 0.5, 0.9))
        checks.append(
            _check(
                feature,
                "two-sample KS",
                float(result.statistic),
                float(result.pvalue),
                float(result.statistic),
                threshold,
                settings,
                f"p10/p50/p90 {quantiles} -> {live_quantiles}{unit}",
            )
        )
    ref_low = int((reference["confidence"] < settings.low_confidence).sum())
    live_low = int((live["confidence"] < settings.low_confidence).sum())
    odds, p_value = stats.fisher_exact(
        [[live_low, len(live) - live_low], [ref_low, len(reference) - ref_low]], alternative="greater"
    )
    ref_share, live_share = ref_low / len(reference), live_low / len(live)
    checks.append(
        _check(
            "low_confidence",
            "Fisher exact (rise)",
            float(odds),
            float(p_value),
            live_share - ref_share,
            settings.max_low_confidence_increase,
            settings,
            f"share below {settings.low_confidence:g}: {ref_share:.0%} -> {live_share:.0%}",
        )
    )
    return checks


def _label_mix(reference: pd.Series, live: pd.Series, labels: list[str], settings: MonitorConfig) -> Check:
    from scipy import stats

    ref_counts = reference.value_counts().reindex(labels, fill_value=0).to_numpy()
    live_counts = live.value_counts().reindex(labels, fill_value=0).to_numpy()
    seen = (ref_counts + live_counts) > 0
    if seen.sum() < 2:  # one label everywhere: nothing to test
        statistic, p_value = 0.0, 1.0
    else:
        result = stats.chi2_contingency(np.vstack([ref_counts[seen], live_counts[seen]]))
        statistic, p_value = float(result.statistic), float(result.pvalue)
    shifts = live_counts / live_counts.sum() - ref_counts / ref_counts.sum()
    top = int(np.abs(shifts).argmax())
    ref_share, live_share = ref_counts[top] / ref_counts.sum(), live_counts[top] / live_counts.sum()
    live_shares = live_counts / live_counts.sum()
    mix = ", ".join(f"{label} {share:.0%}" for label, share in zip(labels, live_shares, strict=True))
    detail = f"largest shift {labels[top]} {ref_share:.0%} -> {live_share:.0%} (live: {mix})"
    effect = float(abs(shifts[top]))
    return _check("label_mix", "chi-square", statistic, p_value, effect, settings.max_label_shift, settings, detail)


def _check(
    feature: str,
    test: str,
    statistic: float,
    p_value: float,
    effect: float,
    threshold: float,
    settings: MonitorConfig,
    detail: str,
) -> Check:
    drift = bool(p_value < settings.p_value and effect >= threshold)
    return Check(feature, test, round(statistic, 6), float(p_value), round(effect, 6), threshold, drift, detail)


def reference_predictions(cfg: PipelineConfig, client: Any, version: Any) -> tuple[pd.DataFrame, list[str]]:
    """The version's logged test split with its own ONNX predictions (label, confidence) and lengths."""
    ref = f"{version.name}/{version.version}"
    predictor = OnnxPredictor.from_dir(store.onnx_dir_for(cfg, client, version.name, str(version.version)))
    if predictor.task != "sequence_classification":
        raise MonitorError(
            f"{ref} is a {predictor.task} model: monitor compares the label mix and confidence of text "
            "classification (sequence_classification) models"
        )
    path = store.run_artifact(cfg, version.run_id, TEST_SPLIT_ARTIFACT) if version.run_id else None
    if path is None:
        raise MonitorError(f"{ref}: its run has no logged test split ({TEST_SPLIT_ARTIFACT})")
    test = pd.read_parquet(path)
    texts = test["text"].astype(str).tolist()
    rows = predictor.predict(texts)
    frame = pd.DataFrame(
        {
            "label": [row["label"] for row in rows],
            "confidence": [max(row["probabilities"].values()) for row in rows],
            "chars": [len(text) for text in texts],
            "true_label": test["label"].astype(str).tolist(),
        }
    )
    return frame, predictor.labels


def monitor(cfg: PipelineConfig, ref: str, since: str | None = None, now: datetime | None = None) -> MonitorReport:
    """Compare the prediction log of the version `ref` names (since `since`, default `monitor.since`) with its
    test split. Reads the registry and the log; writes nothing but the local copy of the model's ONNX folder."""
    since = since if since is not None else cfg.monitor.since
    try:
        start = window_start(since, now)
    except ValueError as exc:
        raise MonitorError(f"since (--since or monitor.since): {exc}") from None
    folder = log_folder(cfg)
    if not folder.is_dir():
        raise MonitorError(
            f"no prediction log at {folder}: `tunepipe serve` writes it with serve.log: true; "
            "point serve.log_path (or paths.store) at the folder the server writes"
        )
    client = store.connect(cfg)
    version = store.resolve(client, store.ModelRef.parse(ref))
    name, number = version.name, str(version.version)
    logged = read_log(folder, since=start)
    mine = (logged["model"] == name) & (logged["version"].astype(str) == number)
    live = logged[mine]
    reference, labels = reference_predictions(cfg, client, version)
    report = MonitorReport(
        model=ref,
        name=name,
        version=number,
        since=start.isoformat(timespec="seconds"),
        log=str(folder),
        live=len(live),
        reference=len(reference),
        other_versions=int((~mine).sum()),
        verdict=NOT_ENOUGH,
        reference_labels={k: int(v) for k, v in reference["true_label"].value_counts().items()},
    )
    if len(live) < cfg.monitor.min_predictions:
        return report
    report.checks = compare(reference, live, labels, cfg.monitor)
    report.verdict = DRIFT if any(check.drift for check in report.checks) else NO_DRIFT
    return report
