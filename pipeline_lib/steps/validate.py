"""Step 1, validate: read the labelled data, split it, check it against the task's rules (Great Expectations
per split, pandas across splits), write the report always and the split Parquet files on success.

Every failure names the file, row, split and rule (the rules: `data.text_rules`, `data.tag_rules`,
`data.cross_split`; `data_format` for files that cannot be read).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline_lib.config import DataConfig, PipelineConfig
from pipeline_lib.data import gx_worker
from pipeline_lib.data.cross_split import cross_split_duplicates
from pipeline_lib.data.drift import compare, profile
from pipeline_lib.data.failures import (
    DataValidationError,
    ValidationFailure,
    count_by_rule,
    group_failures,
    snippet,
)
from pipeline_lib.data.keys import text_key
from pipeline_lib.data.label_issues import describe, find_label_issues, keys_digest
from pipeline_lib.data.readers import DataFormatError, read_data
from pipeline_lib.data.splits import assign_splits, label_mix, split_method
from pipeline_lib.data.text_quality import fix_texts, text_warnings
from pipeline_lib.gates.champion import champion_opinion
from pipeline_lib.layout import SPLITS, RunDir, write_json
from pipeline_lib.registry.lineage import champion_profile
from pipeline_lib.task_types import task_for
from pipeline_lib.training.modeling import resolve_model_source, tokenizer_core

log = logging.getLogger(__name__)

# a training sample costs about this many forward passes of the encoder (forward, backward: twice the forward;
# measured here: 180 embeddings/s against 42 training samples/s, 4.3x); the label check's budget counts in these
FORWARDS_PER_SAMPLE = 3


@dataclass
class ValidateResult:
    """What the validate step found; written to the run's report and returned on success."""

    passed: bool
    rows: dict[str, int]
    label_counts: dict[str, dict[str, int]]
    dropped_duplicates: int
    report_path: str
    labels: list[str] | None = None  # the labels in index order (data.labels, or inferred from train)
    labels_inferred: bool = False
    split_method: str | None = None  # `data.splits.SPLIT_METHODS`: recorded in lineage
    label_mix: dict[str, Any] | None = None  # each split's label shares beside the whole's
    fixed_texts: int = 0  # rows `data.fix_text` repaired
    warnings: dict[str, int] = field(default_factory=dict)  # count per warning rule
    label_issues: dict[str, Any] | None = None  # the label check (`data.label_issues`): flagged, dropped, cost

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Findings:
    failures: list[ValidationFailure] = field(default_factory=list)
    warnings: list[ValidationFailure] = field(default_factory=list)
    gx: dict[str, Any] = field(default_factory=dict)


def validate(cfg: PipelineConfig, run: RunDir) -> ValidateResult:
    """Validate `cfg.data`: write the report and GX results always, the split Parquet files on success."""
    data, task = cfg.data, task_for(cfg.task)
    for split in SPLITS:
        run.split_file(split).unlink(missing_ok=True)
    found = _Findings()
    frame, fixed = _read(data, task, found)
    splits, dropped, method = _split(frame, data, task, found) if frame is not None else ({}, 0, None)
    labelled = _with_labels(data, task, splits, found) if splits else None
    if labelled is not None:
        data = labelled
        found.gx, gx_failures = gx_worker.run_suites(task.check_splits, splits, data)  # GX's own process if started
        leaks = cross_split_duplicates(splits)
        (found.warnings if data.cross_split_duplicates == "warn" else found.failures).extend(leaks)
        found.failures += gx_failures + task.coverage(splits, data)
    checked = None
    if splits and not found.failures:
        _drift(cfg, splits["train"], run, found)
        splits, checked = _check_labels(cfg, data, splits, run, found)
    mix = label_mix(splits) if splits else None
    if mix and any(p is not None and p < data.split.label_mix_p for p in mix["p_value"].values()):
        found.warnings.append(_label_mix_warning(data, mix))
    result = ValidateResult(
        passed=not found.failures,
        rows={name: len(part) for name, part in splits.items()},
        label_counts={name: task.label_counts(part) for name, part in splits.items()},
        dropped_duplicates=dropped,
        report_path=str(run.validation_report),
        labels=data.label_names if (data.labels or data.inferred_labels) else None,
        labels_inferred=not data.labels and bool(data.inferred_labels),
        split_method=method,
        label_mix=mix,
        fixed_texts=fixed,
        warnings=count_by_rule(found.warnings),
        label_issues=checked,
    )
    _write_reports(run, result, found, data)
    if found.failures:
        raise DataValidationError(found.failures, run.validation_report)
    _log_summary(result, found.warnings)
    for split, part in splits.items():
        _write_parquet(part[list(task.split_columns)], run.split_file(split))
    return result


def _read(data: DataConfig, task: Any, found: _Findings) -> tuple[pd.DataFrame | None, int]:
    """The data read whole, its damaged texts repaired (`data.fix_text`) or warned about, keyed."""
    try:
        frame = read_data(data, task.read)
    except DataFormatError as exc:
        found.failures.append(ValidationFailure(exc.file, exc.row, None, "data_format", str(exc)))
        return None, 0
    except FileNotFoundError as exc:
        found.failures.append(ValidationFailure(data.path, None, None, "data_format", str(exc)))
        return None, 0
    fixed = 0
    if data.fix_text:
        frame, fixed = fix_texts(frame)
    found.warnings += text_warnings(frame, fixed=data.fix_text)
    return frame.assign(key=frame["text"].map(text_key, na_action="ignore")), fixed


def _split(
    frame: pd.DataFrame, data: DataConfig, task: Any, found: _Findings
) -> tuple[dict[str, pd.DataFrame], int, str | None]:
    """Repeats dropped as configured, then train / validation / test (the training split limited as configured)."""
    try:
        frame, dropped, prepare_failures = task.prepare(frame, data)
        found.failures += prepare_failures
        splits = assign_splits(frame, data.split)
    except DataFormatError as exc:
        found.failures.append(ValidationFailure(exc.file, exc.row, None, "data_format", str(exc)))
        return {}, 0, None
    splits["train"] = task.limit_train(splits["train"], data, data.split.seed).reset_index(drop=True)
    return splits, dropped, split_method(frame, data.split)


def _with_labels(data: DataConfig, task: Any, splits: dict[str, pd.DataFrame], found: _Findings) -> DataConfig | None:
    """`data` with its labels: as configured, or inferred from the training split (then logged); None when the
    training split has fewer than two (a failure: nothing else can be checked against them)."""
    if data.labels:
        return data
    inferred = task.infer_labels(splits["train"])
    if len(inferred) < 2:
        only = ", ".join(inferred) or "none"
        message = (
            f"the training split has {len(inferred)} label(s) ({only}); expected at least two "
            "(check data.label_column, or the tag column of a CoNLL file)"
        )
        found.failures.append(ValidationFailure(data.path, None, "train", "single_label", message, only))
        return None
    log.info("labels (inferred from the training split): %s", ", ".join(inferred))
    return data.model_copy(update={"inferred_labels": inferred})


def _drift(cfg: PipelineConfig, train: pd.DataFrame, run: RunDir, found: _Findings) -> None:
    """Profile the training split (logged with the version) and compare it with the champion's: a drifted feature
    is a warning, or a failure when its action is `block` (`gates.drift`). No champion: not applicable."""
    settings = cfg.gates.drift
    now = profile(train, tokenizer_core(resolve_model_source(cfg.model.name)), cfg.task)
    write_json(run.profile, now)
    champion = champion_profile(cfg) if settings.enabled else None
    if not settings.enabled:
        write_json(run.drift, {"status": "off (gates.drift.enabled=false)"})
        return
    if champion is None:
        write_json(run.drift, {"status": "not applicable: no champion with a training profile to compare with"})
        return
    version, before = champion
    features = compare(before, now, settings)
    write_json(run.drift, {"status": "compared", "champion": version, "features": [f.to_dict() for f in features]})
    for feature in features:
        if not feature.drifted:
            continue
        message = (
            f"drifted from champion v{version}'s training data: {feature.detail}; {feature.figure:.3g} > "
            f"gates.drift.{feature.name}.max={feature.threshold:g}"
        )
        failure = ValidationFailure(cfg.data.path, None, "train", f"drift_{feature.name}", message)
        (found.failures if feature.action == "block" else found.warnings).append(failure)
    log.info("drift against champion v%s: %s", version, "; ".join(f"{f.name} {f.figure:.3g}" for f in features))


def _check_labels(
    cfg: PipelineConfig, data: DataConfig, splits: dict[str, pd.DataFrame], run: RunDir, found: _Findings
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Likely mislabelled rows (`data.label_issues`): written to `run.label_issues` and warned about; with `drop`
    the most suspect train and validation rows are removed (at most `label_check.max_drop_fraction` of them; the test
    split is never touched). Rows the champion never saw are also scored by it, and its opinion is shown beside."""
    run.label_issues.unlink(missing_ok=True)
    settings = data.label_check
    if data.label_issues == "off":
        return splits, {"status": "off (data.label_issues=off)"}
    if cfg.task != "sequence_classification":
        why = (
            "not applicable to token classification: per-token confident learning needs a tagger's out-of-sample "
            "probabilities, a training run per fold"
        )
        return splits, {"status": why}
    frame = pd.concat([part.assign(split=name) for name, part in splits.items()], ignore_index=True)
    if len(frame) < settings.min_rows:
        return splits, {
            "status": f"skipped: {len(frame)} labelled rows < data.label_check.min_rows={settings.min_rows}"
        }
    check = find_label_issues(
        frame[["split", "source", "row", "text", "label"]],
        data.label_names,
        resolve_model_source(cfg.model.name),
        cfg.paths.cache_dir,
        folds=settings.folds,
        seed=data.split.seed,
        max_length=settings.max_length,
        max_new=embedding_allowance(cfg, data, len(splits["train"])),
        min_rows=settings.min_rows,
    )
    issues = _with_champion_opinion(cfg, check.issues, data.label_names)
    cap = int(settings.max_drop_fraction * sum(len(splits[s]) for s in ("train", "validation")))
    droppable = issues.index[issues["split"] != "test"][:cap] if data.label_issues == "drop" else []
    issues["dropped"] = issues.index.isin(droppable)
    for split in ("train", "validation"):
        gone = issues.loc[issues["dropped"] & (issues["split"] == split), ["source", "row"]]
        places = pd.MultiIndex.from_frame(splits[split][["source", "row"]])
        keep = ~places.isin(pd.MultiIndex.from_frame(gone)) if len(gone) else np.ones(len(places), dtype=bool)
        splits[split] = splits[split][keep].reset_index(drop=True)
    run.label_issues.parent.mkdir(parents=True, exist_ok=True)
    issues.to_parquet(run.label_issues, index=False)
    found.warnings += [_label_issue_warning(row, str(row.source)) for row in issues.itertuples()]
    dropped = issues[issues["dropped"]]
    summary = {
        "status": "checked",
        "setting": data.label_issues,
        **describe(check),
        "dropped": len(dropped),
        "drop_cap": cap if data.label_issues == "drop" else None,
        "dropped_keys_digest": keys_digest([text_key(t) for t in dropped["text"]]) if len(dropped) else None,
        "champion": issues.attrs.get("champion"),
    }
    log.info(
        "label check: %d of %d rows flagged (%s), %d dropped%s; %.1fs (%d embeddings from the cache, %.1fs embedding)",
        len(issues),
        check.checked,
        ", ".join(f"{k} {v}" for k, v in summary["by_split"].items()) or "none",
        len(dropped),
        f"; {check.unchecked} rows not checked yet (data.label_check.budget bounds what one run embeds; later runs"
        " check them, data.label_check.budget=null all now)" + "".join(f"; {note}" for note in check.notes)
        if check.unchecked
        else "",
        check.seconds,
        check.embeddings_cached,
        check.embed_seconds,
    )
    return splits, summary


def embedding_allowance(cfg: PipelineConfig, data: DataConfig, train_rows: int) -> int | None:
    """How many rows the label check may embed now (`data.label_check.budget` of the training step's work, a
    training sample counted as `FORWARDS_PER_SAMPLE` forward passes; at least `label_check.min_rows`, so that a
    first run has rows to check); None: all (`drop`, or no budget)."""
    budget = data.label_check.budget
    if data.label_issues == "drop" or budget is None:
        return None
    return max(data.label_check.min_rows, int(budget * FORWARDS_PER_SAMPLE * train_rows * cfg.train.epochs))


def _with_champion_opinion(cfg: PipelineConfig, issues: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """The champion's label and its probability of the given label, for flagged rows it never saw (NaN else)."""
    issues = issues.assign(champion_label=None, champion_given_probability=np.nan)
    try:
        opinion = champion_opinion(cfg, issues["text"].astype(str).tolist(), labels) if len(issues) else None
    except Exception as exc:  # a second opinion only: an unreadable store must not stop validation
        log.warning("label check: the champion's opinion is not available (%s: %s)", type(exc).__name__, exc)
        opinion = None
    if opinion is None:
        return issues
    new, probs = opinion["new"], opinion["probs"]
    given = issues["label"].map({label: i for i, label in enumerate(labels)}).to_numpy()
    issues.loc[new, "champion_label"] = [labels[i] for i in probs[new].argmax(1)]
    issues.loc[new, "champion_given_probability"] = probs[new, given[new]].round(6)
    issues.attrs["champion"] = opinion["version"]
    return issues


def _label_issue_warning(row: Any, file: str) -> ValidationFailure:
    champion = (
        f"; champion says {row.champion_label!r} (p({row.label!r})={row.champion_given_probability:.2f})"
        if isinstance(row.champion_label, str)
        else ""
    )
    message = (
        f"labelled {row.label!r}, looks {row.suggested!r} (p={row.suggested_probability:.2f}, self-confidence "
        f"{row.score:.3f}){champion}{'; dropped' if row.dropped else ''}: {snippet(row.text)}"
    )
    return ValidationFailure(file, int(row.row), row.split, "label_issue", message, f"{row.label} → {row.suggested}")


def _log_summary(result: ValidateResult, warnings: list[ValidationFailure]) -> None:
    """Warnings once per cause, with their fix (every row is in the report)."""
    for group in group_failures(warnings):
        log.warning("warning: %s", group.line())


def _label_mix_warning(data: DataConfig, mix: dict[str, Any]) -> ValidationFailure:
    """The least likely split, with the label whose share is furthest from the whole's."""
    split = min((s for s in SPLITS if mix["p_value"].get(s) is not None), key=lambda s: mix["p_value"][s])
    label = max(mix[split], key=lambda name: abs(mix[split][name] - mix["whole"][name]))
    message = (
        f"label mix unlikely under the data's (chi-square p={mix['p_value'][split]:.2g} < "
        f"data.split.label_mix_p={data.split.label_mix_p:g}): {label!r} is {mix[split][label]:.1%} of {split} but "
        f"{mix['whole'][label]:.1%} of the data; another data.split.seed (or more data) gives a more representative "
        "split"
    )
    return ValidationFailure(data.path, None, split, "label_mix", message)


def _write_reports(run: RunDir, result: ValidateResult, found: _Findings, data: DataConfig) -> None:
    report = {
        **result.to_dict(),
        "causes": [group.to_dict() for group in group_failures(found.failures)],
        "failures": [asdict(failure) for failure in found.failures],
        "warnings": [asdict(warning) for warning in found.warnings],
        "data": data.model_dump(mode="json"),
    }
    write_json(run.validation_report, report)
    write_json(run.gx_result, found.gx)


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write atomically (temp file + rename), like layout.write_json."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
