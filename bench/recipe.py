"""The default recipe against the write-ups' plain loop on the same split files (issue 30), and one-change-at-a-time
ablations of the default.

    python bench/recipe.py [--datasets 50agree allagree] [--seeds 42 43 44] [--ablations all | none | NAME ...]
                           [--max-rows N] [--set k=v ...] [--keep-rows]
    python bench/recipe.py --speed-check [--datasets ...] [--seeds ...]   # one epoch each, alternating, one run

For each dataset: the validate step writes the stratified 80/10/10 split files (seed 42, as the literature splits
FPB) once; then, on exactly those rows,
- the plain loop the seed write-ups describe, in plain PyTorch (AdamW 2e-5 constant, batch 16, fp32, shuffled
  batches, 5 epochs, dynamic padding, best epoch by validation macro-F1), per seed;
- `tunepipe`'s library steps (tokenize → train → evaluate) with the default recipe, per seed;
- each ablation: the default with one change (`ABLATIONS`), per seed.
Every row reports validation and test macro-F1 (mean ± spread over the seeds), test accuracy and train time.
`--max-rows` keeps every k-th row of the data file (a smoke run); the figures are then not comparable.
`--keep-rows` adds rows to a dataset's section: the rows it holds (the plain loop's included, 40 minutes on 50Agree)
are kept as they are, with the line of the run that measured them, and only the requested ablations are trained.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from _results import (
    BLOCK,
    REPO,
    RESULTS,
    SHARED_DATA,
    machine,
    subset,
    timed_steps,
    train_and_score,
    write_section,
)

SPLIT = ["data.split.method=stratified", "data.split.seed=42"]


@dataclass(frozen=True)
class Dataset:
    """One bench dataset: its data, config, the validate step's overrides that draw its split files, and the names
    of its selection metric and accuracy (the table's columns)."""

    title: str
    data: Path
    config: Path
    split_sets: tuple[str, ...]
    metric: str = "macro_f1"
    accuracy: str = "accuracy"
    split: str = "stratified 80/10/10, seed 42"

    @property
    def tagged(self) -> bool:
        return self.metric == "entity_f1"

    @property
    def plain(self) -> str:
        return PLAIN_NER if self.tagged else PLAIN

    def columns(self) -> str:
        metric, accuracy = ("entity F1", "token accuracy") if self.tagged else ("macro-F1", "accuracy")
        return (
            f"| recipe | val {metric} | test {metric} | test {accuracy} | train time | speed vs plain | "
            "optimizer steps only | speed vs plain, steps only |"
        )


DATASETS = {
    "50agree": Dataset(
        "FPB 50agree",
        SHARED_DATA / "financial_phrasebank" / "Sentences_50Agree.txt",
        REPO / "configs" / "financial_phrasebank.yaml",
        tuple(SPLIT),
    ),
    "allagree": Dataset(
        "FPB allagree",
        SHARED_DATA / "financial_phrasebank" / "Sentences_AllAgree.txt",
        REPO / "configs" / "financial_phrasebank.yaml",
        tuple(SPLIT),
    ),
    # NER: 2,000 seeded training sentences of eng.train, eng.testa selects, eng.testb scores
    "conll2000": Dataset(
        "CoNLL-2003 NER, 2,000 training sentences",
        SHARED_DATA / "conll2003",
        REPO / "configs" / "conll2003.yaml",
        ("data.max_train_sentences=2000",),
        "entity_f1",
        "token_accuracy",
        "eng.train's 2,000 seeded sentences / eng.testa / eng.testb",
    ),
}

# One change at a time from the default recipe (name: --set overrides). `auto` trains in fp32 on CPUs (bf16 on a GPU
# that has it). The bf16 rows run natively on a CPU with AMX / AVX-512 BF16 (the `_bf16` sections); elsewhere bf16 is
# emulated: on 2 AVX2 cores one AllAgree epoch took over 6 min (40 s in fp32), so they were not run there.
ABLATIONS: dict[str, list[str]] = {
    "fp32": ["train.precision=fp32"],
    "bf16 autocast": ["train.precision=bf16"],
    "lr 2e-5": ["train.learning_rate=2e-5"],
    "lr 3e-5": ["train.learning_rate=3e-5"],
    "lr 5e-5": ["train.learning_rate=5e-5"],
    "constant lr, no warmup": ["train.lr_scheduler=constant", "train.warmup_ratio=0"],
    "warmup + linear decay": ["train.lr_scheduler=linear", "train.warmup_ratio=0.1"],
    "group_by_length off": ["train.group_by_length=false"],
    "group_by_length on": ["train.group_by_length=true"],
    "weight decay 0": ["train.weight_decay=0"],
    "weight decay 0.1": ["train.weight_decay=0.1"],
    "epochs 4": ["train.epochs=4"],
    "epochs 3": ["train.epochs=3"],
    "no early stopping": ["train.early_stopping_patience=0"],
    "patience 1": ["train.early_stopping_patience=1"],
    "patience 4": ["train.early_stopping_patience=4"],
    "validation every 60 steps": ["train.eval_every=60"],  # AllAgree: ~twice an epoch; 50Agree: ~4 times
    "max_length 128 (the plain loop's)": ["model.max_length=128"],
    "label smoothing 0.1": ["train.label_smoothing=0.1"],
    "word embeddings frozen": ["train.freeze_embeddings=true"],
    "dropout 0": ["model.dropout=0"],
    "word embeddings frozen, dropout 0": ["train.freeze_embeddings=true", "model.dropout=0"],
    # every embedding and the encoder's bottom layers frozen: the same trainable weights as train.freeze=top_k with
    # the top 5 (4) of the default model's 6 layers (tests/unit/training/test_adaptation.py)
    "bottom layer frozen (top 5 of 6 train)": ["train.frozen_bottom_layers=1"],
    "bottom 2 layers frozen (top 4 of 6 train)": ["train.frozen_bottom_layers=2"],
    "word embeddings frozen, dropout 0, epochs 4": [
        "train.freeze_embeddings=true",
        "model.dropout=0",
        "train.epochs=4",
    ],
}


DEFAULT = "tunepipe default"
PLAIN = "plain loop (AdamW 2e-5 constant, bs16, fp32, 5 ep, best by val)"
# the token-classification write-ups (the Hugging Face course's NER chapter): first sub-token labelled, truncation at
# 128, AdamW 2e-5 with weight decay 0.01 and linear decay, 3 epochs; the best epoch by validation entity F1
PLAIN_NER = "plain loop (AdamW 2e-5 linear, wd 0.01, bs16, fp32, 3 ep, best by val)"
TIMING = (
    "Train time: the plain loop's optimizer steps only (its validation passes, model load and selection not "
    "counted); tunepipe's whole train step (model load, Trainer set-up, evaluations, early stopping, saving): the "
    "speed column favours the plain loop. The last two columns time both alike, optimizer steps only (forward, "
    "backward, update; tunepipe's `step_seconds`); — where a row was measured before those columns existed."
)


ROWS = (
    "A row `default, X` is one change X from the default of the run that measured it (the run lines below): until "
    "d13ac3d the classification default trained the word embeddings, since 502803b it freezes them (the NER "
    "default trains them). Runs hours apart on this "
    "machine differ by up to ~10 % in time for the same work (`recipe_speed` compares speed within one run)."
)


@dataclass
class Outcome:
    val_metric: float  # macro-F1 (classification) or entity F1 (NER)
    test_accuracy: float  # NER: token accuracy
    test_metric: float
    train_seconds: float
    step_seconds: float | None = None  # inside optimizer steps only (rows measured before this column: None)
    whole_seconds: float | None = None  # the plain loop: model load, steps, validation passes and selection


def split_files(spec: Dataset, workdir: Path, max_rows: int | None, overrides: list[str]) -> Path:
    """The validate step's split files for `spec`, joined into one file with a `split` column (the reader then keeps
    them as given; Parquet for texts, JSONL for tagged sentences, tags as IOB2): both contenders train, select and
    test on exactly these rows."""
    from pipeline_lib.config import load_config
    from pipeline_lib.layout import SPLITS, RunDir

    source = spec.data
    if not spec.tagged:
        source = workdir / spec.data.name
        subset(spec.data, source, max_rows)
    sets = [f"data.path={source}", *spec.split_sets, f"paths.store={workdir}/store", *overrides]
    if spec.tagged and max_rows:
        sets.append(f"data.max_train_sentences={max_rows}")
    cfg = load_config(spec.config, sets)
    run = RunDir(workdir / "split-run")
    timed_steps(cfg, run, ("validate",))
    frames = [pd.read_parquet(run.split_file(split)).assign(split=split) for split in SPLITS]
    joined = pd.concat(frames, ignore_index=True)
    if spec.tagged:
        target = workdir / f"{spec.data.name}-splits.jsonl"
        joined[["tokens", "tags", "split"]].to_json(target, orient="records", lines=True, force_ascii=False)
        return target
    target = workdir / f"{spec.data.stem}-splits.parquet"
    joined[["text", "label", "split"]].to_parquet(target, index=False)
    return target


def plain_loop(splits: Path, seed: int, epochs: int = 5, lr: float = 2e-5, batch: int = 16) -> Outcome:
    """The write-ups' loop: AdamW at a constant rate, fp32, shuffled batches, the best epoch by validation macro-F1."""
    import torch
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pipeline_lib.hardware import detect
    from pipeline_lib.training.modeling import resolve_model_source

    whole = time.perf_counter()
    torch.manual_seed(seed)
    random.seed(seed)
    torch.set_num_threads(detect().cores)
    frame = pd.read_parquet(splits)
    labels = sorted(frame["label"].unique())
    parts = {name: frame[frame["split"] == name] for name in ("train", "validation", "test")}
    source = resolve_model_source("default")
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=len(labels))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)

    def batches(part: pd.DataFrame, shuffle: bool):
        order = list(range(len(part)))
        if shuffle:
            random.shuffle(order)
        for start in range(0, len(order), batch):
            rows = part.iloc[order[start : start + batch]]
            enc = tokenizer(list(rows["text"]), truncation=True, max_length=128, padding=True, return_tensors="pt")
            yield enc, torch.tensor([labels.index(label) for label in rows["label"]])

    def predict(part: pd.DataFrame) -> list[int]:
        model.eval()
        with torch.no_grad():
            out = [model(**enc).logits.argmax(-1) for enc, _ in batches(part, shuffle=False)]
        model.train()
        return torch.cat(out).tolist()

    def gold(part: pd.DataFrame) -> list[int]:
        return [labels.index(label) for label in part["label"]]

    best, best_state, seconds = -1.0, None, 0.0
    model.train()
    for _ in range(epochs):
        start = time.perf_counter()
        for enc, y in batches(parts["train"], shuffle=True):
            loss = torch.nn.functional.cross_entropy(model(**enc).logits, y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        seconds += time.perf_counter() - start
        val = f1_score(gold(parts["validation"]), predict(parts["validation"]), average="macro")
        if val > best:
            best, best_state = val, {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    whole = time.perf_counter() - whole
    test_pred, test_gold = predict(parts["test"]), gold(parts["test"])
    return Outcome(
        val_metric=best,
        test_accuracy=accuracy_score(test_gold, test_pred),
        test_metric=f1_score(test_gold, test_pred, average="macro"),
        train_seconds=seconds,
        whole_seconds=whole,
    )


def plain_ner_loop(splits: Path, seed: int, epochs: int = 3, lr: float = 2e-5, batch: int = 16) -> Outcome:
    """The NER write-ups' loop: each word's first sub-token labelled (the rest -100), sentences truncated at 128
    sub-tokens, AdamW (weight decay 0.01) with linear decay from 2e-5, fp32, shuffled batches, the best epoch by
    validation entity F1. Scored like tunepipe's models: every word of whole sentences (windows), seqeval."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, get_linear_schedule_with_warmup

    from pipeline_lib.hardware import detect
    from pipeline_lib.task_types.entities import entity_metrics
    from pipeline_lib.task_types.windows import run_windows, tags_from_logits
    from pipeline_lib.training.modeling import resolve_model_source

    torch.manual_seed(seed)
    random.seed(seed)
    torch.set_num_threads(detect().cores)
    frame = pd.read_json(splits, lines=True)
    parts = {name: frame[frame["split"] == name] for name in ("train", "validation", "test")}
    labels = sorted({tag for tags in parts["train"]["tags"] for tag in tags}, key=lambda t: (t != "O", t[2:], t))
    source = resolve_model_source("default")
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForTokenClassification.from_pretrained(source, num_labels=len(labels))
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)], "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=lr)
    steps = epochs * -(-len(parts["train"]) // batch)
    schedule = get_linear_schedule_with_warmup(optimizer, 0, steps)

    def batches(part: pd.DataFrame):
        order = list(range(len(part)))
        random.shuffle(order)
        for start in range(0, len(order), batch):
            rows = part.iloc[order[start : start + batch]]
            enc = tokenizer(
                [list(t) for t in rows["tokens"]],
                is_split_into_words=True,
                truncation=True,
                max_length=128,
                padding=True,
                return_tensors="pt",
            )
            y = torch.full(enc["input_ids"].shape, -100)
            for i, tags in enumerate(rows["tags"]):
                previous = None
                for j, word in enumerate(enc.word_ids(i)):
                    if word is not None and word != previous:
                        y[i, j] = labels.index(tags[word])
                    previous = word
            yield enc, y

    def score(part: pd.DataFrame) -> dict:
        model.eval()

        def forward(features: dict) -> object:
            with torch.no_grad():
                return model(**{k: torch.from_numpy(v) for k, v in features.items()}).logits.numpy()

        names = list(tokenizer.model_input_names)
        words = [list(t) for t in part["tokens"]]
        per_word = run_windows(forward, tokenizer, names, 128, words, 32, 64, labels.index("O"))
        model.train()
        return entity_metrics([list(t) for t in part["tags"]], tags_from_logits(per_word, labels))

    best, best_state, seconds = -1.0, None, 0.0
    model.train()
    for _ in range(epochs):
        start = time.perf_counter()
        for enc, y in batches(parts["train"]):
            model(**enc, labels=y).loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
        seconds += time.perf_counter() - start
        val = score(parts["validation"])["entity_f1"]
        if val > best:
            best, best_state = val, {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    test = score(parts["test"])
    return Outcome(
        val_metric=best, test_accuracy=test["token_accuracy"], test_metric=test["entity_f1"], train_seconds=seconds
    )


def tunepipe_recipe(spec: Dataset, splits: Path, seed: int, overrides: list[str]) -> Outcome:
    """The library's tokenize → train → evaluate on the given split files, with `overrides` over the default."""
    sets = [f"data.path={splits}", f"train.seed={seed}"]
    if spec.tagged:  # one JSONL file with a split column, tags already IOB2, the training sample already drawn
        sets += ["data.format=jsonl", "data.files={}", "data.tag_scheme=iob2", "data.cross_split_duplicates=warn"]
    else:
        sets.append("data.format=parquet")
    _, results, seconds = train_and_score(
        spec.config, [*sets, *overrides], ("validate", "tokenize", "train", "evaluate")
    )
    metrics = results["evaluate"]["metrics"]
    return Outcome(
        val_metric=float(results["train"]["best_metric"]),
        test_accuracy=metrics[spec.accuracy],
        test_metric=metrics[spec.metric],
        train_seconds=seconds["train"],
        step_seconds=float(results["train"]["step_seconds"]),
    )


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else f"{mean:.4f}"


def table_row(name: str, outcomes: list[Outcome], plain_seconds: float | None) -> str:
    seconds = statistics.fmean(o.train_seconds for o in outcomes)
    speed = f"{plain_seconds / seconds:.2f}x" if plain_seconds else "1.00x"
    steps = statistics.fmean(o.step_seconds or o.train_seconds for o in outcomes)
    step_speed = f"{plain_seconds / steps:.2f}x" if plain_seconds else "1.00x"
    return (
        f"| {name} | {spread([o.val_metric for o in outcomes])} | {spread([o.test_metric for o in outcomes])} | "
        f"{spread([o.test_accuracy for o in outcomes])} | {seconds:.0f} s | {speed} | {steps:.0f} s | {step_speed} |"
    )


def bf16_cpu() -> bool:
    """Whether this machine is a CPU with bf16 instructions (AMX / AVX-512 BF16), where the bf16 rows run natively."""
    from pipeline_lib.hardware import detect

    capability = detect()
    return capability.device == "cpu" and capability.bf16


def section_name(base: str) -> tuple[str, str]:
    """The section of a run on this machine and the words its title adds: a CPU with bf16 instructions has sections
    of its own (`_bf16`), so that a run there leaves the other machines' tables in place."""
    if bf16_cpu():
        return f"{base}_bf16", ", on a CPU with bf16 instructions"
    return base, ""


def speed_check(datasets: list[str], seeds: list[int], overrides: list[str]) -> None:
    """Training speed free of the machine's drift: one epoch of the plain loop, then one epoch of the default, per
    seed, alternating in one process on the same split files; optimizer steps timed alike (forward, backward, update),
    and each contender's whole training (model load, steps, its validation pass, selection or saving) beside them."""
    lines, figures = [], []
    for dataset in datasets:
        spec = DATASETS[dataset]
        if spec.tagged:
            continue
        with tempfile.TemporaryDirectory(prefix="tunepipe-recipe-") as tmp:
            splits = split_files(spec, Path(tmp), None, overrides)
            pairs = []
            for seed in seeds:
                plain = plain_loop(splits, seed, epochs=1)
                ours = tunepipe_recipe(spec, splits, seed, [*overrides, "train.epochs=1"])
                pairs.append((plain.train_seconds, ours.step_seconds or 0.0, plain.whole_seconds, ours.train_seconds))
                print(dataset, seed, pairs[-1], flush=True)
        plain_s, steps_s, plain_whole, ours_whole = (statistics.fmean(column) for column in zip(*pairs, strict=True))
        per_seed = ", ".join(f"{p / s:.2f}x" for p, s, _, _ in pairs)
        lines.append(
            f"| {spec.title} | {len(pairs)} | {plain_s:.1f} s | {steps_s:.1f} s | {plain_s / steps_s:.2f}x "
            f"({per_seed}) | {plain_whole:.1f} s | {ours_whole:.1f} s | {plain_whole / ours_whole:.2f}x |"
        )
        figures.append(
            f"{spec.title}: {plain_s / steps_s:.2f}x ({per_seed}) steps only, {plain_whole / ours_whole:.2f}x whole"
        )
    name, words = section_name("recipe_speed")
    body = (
        f"## Training speed against the plain loop, interleaved in one run{words} (issue 30)\n\n"
        "One epoch of the plain loop, then one epoch of `tunepipe`'s default (train.epochs=1), per seed, alternating "
        "in one process on the same split files, so that the machine's drift over hours (the same 5-epoch row took "
        "188 s and 209 s on this machine four hours apart) cannot favour either; nothing else ran on the machine. "
        "Optimizer steps timed alike for both (forward, backward, update; no validation). Whole: the plain loop from "
        "model load to its selected state (steps, tokenizing each batch, its validation pass, the state copy); "
        "tunepipe's train step (model load, Trainer set-up, its validation pass, saving the checkpoint).\n\n"
        "| data | seeds | plain loop, steps | tunepipe, steps | speed, steps (per seed) | plain loop, whole "
        "| tunepipe, whole | speed, whole |\n|---|---|---|---|---|---|---|---|\n"
        + "\n".join(lines)
        + f"\n\nMachine: {machine()}."
    )
    summary = (f"Default recipe's training speed vs the plain loop, one run{words}", "; ".join(figures), "≥ 2x")
    write_section(name, body, [summary])
    print(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=sorted(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    parser.add_argument("--ablations", nargs="+", default=["all"], help="all, none, or names of ABLATIONS")
    parser.add_argument("--max-rows", type=int, default=None, help="every k-th row only (smoke run)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="applied to every tunepipe row")
    parser.add_argument("--keep-rows", action="store_true", help="keep the section's rows; train only what is new")
    parser.add_argument("--speed-check", action="store_true", help="only the interleaved one-epoch speed check")
    args = parser.parse_args()
    if args.speed_check:
        speed_check(args.datasets, args.seeds, args.overrides)
        return
    names = list(ABLATIONS) if args.ablations == ["all"] else [] if args.ablations == ["none"] else args.ablations
    unknown = sorted(set(names) - set(ABLATIONS))
    if unknown:
        parser.error(f"unknown ablations {unknown}; choose from {sorted(ABLATIONS)}")

    for dataset in args.datasets:
        spec = DATASETS[dataset]
        kept, earlier = kept_rows(dataset, args.seeds) if args.keep_rows else ({}, "")
        with tempfile.TemporaryDirectory(prefix="tunepipe-recipe-") as tmp:
            splits = split_files(spec, Path(tmp), args.max_rows, args.overrides)
            frame = pd.read_json(splits, lines=True) if spec.tagged else pd.read_parquet(splits)
            rows_per_split = frame["split"].value_counts().to_dict()
            rows = dict(kept)
            if spec.plain not in rows:
                loop = plain_ner_loop if spec.tagged else plain_loop
                rows[spec.plain] = table_row(spec.plain, [loop(splits, seed) for seed in args.seeds], None)
                print(rows[spec.plain], flush=True)
            plain_seconds = row_means(rows[spec.plain])[3]
            contenders = {DEFAULT: [], **{f"default, {name}": ABLATIONS[name] for name in names}}
            for name, sets in contenders.items():
                if name in kept and name == DEFAULT:
                    continue
                outcomes = [tunepipe_recipe(spec, splits, seed, [*args.overrides, *sets]) for seed in args.seeds]
                rows[name] = table_row(name, outcomes, plain_seconds)
                print(rows[name], flush=True)
        write_dataset_section(dataset, rows_per_split, rows, args, earlier, default_kept=DEFAULT in kept)


def kept_rows(dataset: str, seeds: list[int]) -> tuple[dict[str, str], str]:
    """The table rows of the dataset's section on this kind of machine in bench/RESULTS.md, by recipe, and the line of the run that measured
    them; nothing when the section is missing or used other seeds."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    section = section_name(f"recipe_{dataset}")[0]
    for match in BLOCK.finditer(text):
        body = match.group("body")
        if match.group("name") != section or f"seeds {seeds} " not in body:
            continue
        rows = [line for line in body.splitlines() if line.startswith("| ") and not line.startswith("| recipe ")]
        stamps = [line.strip("_") for line in body.splitlines() if line.startswith("_Run ")]
        for line in body.splitlines():  # runs named by an earlier keep, one per paragraph
            if line.startswith("Rows kept from earlier runs: "):
                stamps = [*line.removeprefix("Rows kept from earlier runs: ").split("; "), *stamps]
        return {row.split(" | ")[0][2:]: row for row in rows}, "; ".join(stamps)
    return {}, ""


def row_means(row: str) -> tuple[float, ...]:
    """A table row's means: validation and test metric (macro-F1 or entity F1), test accuracy, train seconds."""
    cells = [cell.strip() for cell in row.strip("| ").split(" | ")]
    return tuple(float(cell.split(" ")[0]) for cell in cells[1:5])


def full_width(row: str) -> str:
    """A row measured before the steps-only columns existed, with those cells marked as not measured."""
    return row if row.count(" | ") >= 7 else f"{row} — | — |"


def steps_only(row: str) -> str:
    """The steps-only speed of a row, for the summary (nothing for a row measured before that column)."""
    cells = [cell.strip() for cell in row.strip("| ").split(" | ")]
    measured = len(cells) > 7 and cells[7] != "—"
    return f" ({cells[7]} counting optimizer steps only, as the plain loop is timed)" if measured else ""


def write_dataset_section(
    dataset: str, rows_per_split: dict, rows: dict[str, str], args, earlier: str, default_kept: bool = False
) -> None:
    """One section per dataset (a run on one set leaves the other's figures in place), with its summary row (which
    says so when the default's row was kept from an earlier run rather than measured by this one)."""
    spec = DATASETS[dataset]
    smoke = f" Smoke run on every k-th row ({args.max_rows} rows): not comparable." if args.max_rows else ""
    title, metric = spec.title, "entity F1" if spec.tagged else "macro-F1"
    kept = f"\n\nRows kept from earlier runs: {earlier}" if earlier else ""
    name, words = section_name(f"recipe_{dataset}")
    body = (
        f"## Default recipe against the plain loop, {title}{words} (issue 30)\n\n"
        f"Same split files for every row ({spec.split}; train/val/test {rows_per_split.get('train')}/"
        f"{rows_per_split.get('validation')}/{rows_per_split.get('test')}), seeds {args.seeds} (mean ± sample "
        f"standard deviation).{smoke} {TIMING} {ROWS}\n\n"
        f"{spec.columns()}\n"
        "|---|---|---|---|---|---|---|---|\n"
        + "\n".join(map(full_width, rows.values()))
        + f"\n\nMachine: {machine()}.{kept}"
    )
    plain, default = row_means(rows[spec.plain]), row_means(rows[DEFAULT])
    figure = (
        f"default test {metric} {default[1]:.4f} vs plain {plain[1]:.4f} (val {default[0]:.4f} vs {plain[0]:.4f}), "
        f"{plain[3] / default[3]:.2f}x its speed{steps_only(rows[DEFAULT])} "
        f"({len(args.seeds)} seed{'s' if len(args.seeds) > 1 else ''}"
        f"{'; the default row kept from an earlier run, see the section' if default_kept else ''})"
    )
    question = f"Default recipe vs the plain loop, {title}{words}"
    write_section(name, body, [(question, figure, "≥ plain on test and val, ≥ 2x speed")])
    print(body)


if __name__ == "__main__":
    main()
