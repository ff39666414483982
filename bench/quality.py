"""Model quality with searched recipes (issue 17): a hyper-parameter search on the validation split, then the best
recipe trained with several seeds and scored once on the test split; figures, cost and trial counts in RESULTS.md.

    python bench/quality.py fpb50   [--trials 20] [--seeds 42 43 44]   # FPB 50Agree, stratified 80/10/10, seed 42
    python bench/quality.py fpb-all [--trials 20] [--seeds 42 43 44]   # FPB AllAgree, same split
    python bench/quality.py conll   [--trials 8] [--search-rows 4000] [--seeds 42]   # eng.train / testa / testb
    python bench/quality.py mpnet   [--recipe configs/tuned/quality-fpb50.yaml] [--trials 0] [--seeds 42]
    python bench/quality.py distill [--seeds 42 43 44] [--teacher-seeds 42] [--work DIR] [--unlabeled FILE|conll-finance]
    python bench/quality.py distill-all [--seeds 42 43 44]                    # the same on AllAgree
    python bench/quality.py distill-conll [--seeds 42]                        # per word, CoNLL-2003 (2,000)

Each kind runs the library (no Prefect, no registry): `commands.tune` (study `quality-<kind>` in
`.tunepipe/bench-quality/`: rerunning the same command continues a killed search) writes the overlay
`configs/tuned/quality-<kind>.yaml`, then validate → tokenize → train → evaluate per seed with base + overlay. The
search never sees the test split; each seed's test figures are measured once. `--trials 0` skips the search and trains
`--recipe` (default: the kind's own overlay if present, else the base config). `--search-rows N` searches on N training
rows (sentences for CoNLL) and trains the final runs on all. `--max-rows N` makes a smoke run on N rows of the data;
`--set k=v` applies to search and final runs, `--search-set k=v` to the search only; `--search-only` stops after the
search (its trial table and overlay) and trains no final runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import distill
from _results import FPB_50AGREE, REPO, SHARED_DATA, machine, subset, train_and_score, write_section
from distill import Distillation

FPB_ALLAGREE = SHARED_DATA / "financial_phrasebank" / "Sentences_AllAgree.txt"
CONLL = SHARED_DATA / "conll2003"
STORE = REPO / ".tunepipe" / "bench-quality"


@dataclass(frozen=True)
class Kind:
    title: str  # what the section's `## ` title asks (no parentheses: ../shared/hooks/before-stop cuts there)
    config: str
    data: Path
    sets: tuple[str, ...]
    metrics: tuple[str, ...]  # test metrics shown; the first ones have targets
    targets: dict[str, float]
    trials: int
    seeds: tuple[int, ...]
    search_rows: int | None = None  # default --search-rows
    rows_field: str = "data.max_train_rows"
    detail: str = ""  # shown in parentheses after the title


FPB_SETS = ("data.split.method=stratified", "data.split.seed=42")
FPB_CONFIG = "configs/financial_phrasebank.yaml"
FPB_TARGETS = {"accuracy": 0.86, "macro_f1": 0.84}  # FinBERT's on 50Agree


def phrasebank(
    title: str, data: Path, sets: tuple[str, ...], targets: dict[str, float], trials: int, seeds: int
) -> Kind:
    config, metrics = "configs/financial_phrasebank.yaml", ("accuracy", "macro_f1")
    return Kind(title, config, data, (*FPB_SETS, *sets), metrics, targets, trials, tuple(range(42, 42 + seeds)))


KINDS = {
    "fpb50": phrasebank("Financial PhraseBank 50Agree, default model", FPB_50AGREE, (), FPB_TARGETS, 20, 3),
    "fpb-all": phrasebank(
        "Financial PhraseBank AllAgree, default model",
        FPB_ALLAGREE,
        ("data.name=financial_phrasebank_allagree",),
        {"accuracy": 0.97, "macro_f1": 0.955},
        20,
        3,
    ),
    "conll": Kind(
        "CoNLL-2003 English NER, default model",
        "configs/conll2003.yaml",
        CONLL,
        (),
        ("entity_f1", "entity_precision", "entity_recall"),
        {"entity_f1": 0.89},
        8,
        (42,),
        search_rows=4000,
        rows_field="data.max_train_sentences",
        detail="eng.train → eng.testa → eng.testb",
    ),
    "mpnet": replace(
        phrasebank(
            "Financial PhraseBank 50Agree, mpnet-base", FPB_50AGREE, ("model.name=mpnet-base",), FPB_TARGETS, 0, 1
        ),
        detail="all-mpnet-base-v2, 110M",
    ),
}


DISTILL = {  # bench/distill.py: the mpnet-base teacher, the default model plain and distilled
    "distill": Distillation(
        "Financial PhraseBank 50Agree, distillation", FPB_CONFIG, FPB_50AGREE, FPB_SETS, FPB_TARGETS
    ),
    "distill-all": Distillation(
        "Financial PhraseBank AllAgree, distillation",
        FPB_CONFIG,
        FPB_ALLAGREE,
        (*FPB_SETS, "data.name=financial_phrasebank_allagree"),
        {"accuracy": 0.97, "macro_f1": 0.955},
    ),
    # per-word distillation on 2,000 training sentences (the teacher, mpnet-base, trains about 5x slower than the
    # student on this CPU); eng.testa selects, eng.testb scores
    "distill-conll": Distillation(
        "CoNLL-2003 English NER 2000 training sentences, distillation",
        "configs/conll2003.yaml",
        CONLL,
        ("data.max_train_sentences=2000",),
        {},
        ("entity_f1", "token_accuracy"),
        "eng.train (2,000 sentences, seeded sample) → eng.testa → eng.testb; the teacher with a base-size model's "
        "recipe, batch 8 at learning rate 5e-5, warmup 10 %, weight decay 0.01 (the NER default, batch 32 at 1.4e-4, "
        "is the small model's: 250 optimizer steps in 4 epochs; at batch 32 mpnet-base reached test entity F1 0.37 "
        "at 1e-4, and 0.30 on eng.testa after 2 of 4 epochs at 5e-5)",
        ("train.batch_size=8", "train.learning_rate=5e-5", "train.warmup_ratio=0.1", "train.weight_decay=0.01"),
    ),
}


def search(kind: str, base: list[str], sets: list[str], trials: int, scratch: Path | None) -> tuple[dict, float, Path]:
    """The study `quality-<kind>` to `trials` finished trials; its result, wall seconds and overlay. A smoke run
    (`scratch`) keeps its study, store and overlay there, apart from the benchmark's."""
    from pipeline_lib.commands.tune import tune
    from pipeline_lib.config import load_config

    where = STORE if scratch is None else scratch / "store"
    placed = [f"paths.store={where}", f"paths.artifacts={where / 'artifacts'}", f"tune.study=quality-{kind}"]
    if scratch is not None:
        placed += [f"tune.overlay_dir={scratch / 'tuned'}", f"paths.write_roots=[., {scratch}]"]
    cfg = load_config(base, [*sets, *placed, f"tune.trials={trials}"])
    start = time.perf_counter()
    result = tune(cfg, base).to_dict()
    return result, time.perf_counter() - start, (REPO / result["overlay"]).resolve()


def final_runs(spec: Kind, layers: list[str], sets: list[str], seeds: list[int]) -> list[dict]:
    rows = []
    for seed in seeds:
        start = time.perf_counter()
        cfg, results, timings = train_and_score(layers, [*sets, f"train.seed={seed}"])
        rows.append(
            {
                "seed": seed,
                "metrics": results["evaluate"]["metrics"],
                "train": results["train"],
                "rows": results["validate"]["rows"],
                "train_s": timings["train"],
                "wall_s": time.perf_counter() - start,
                "recipe": cfg.train.model_dump(mode="json"),
            }
        )
        shown = " ".join(f"{m}={rows[-1]['metrics'][m]:.4f}" for m in spec.metrics)
        print(f"[seed {seed}] {shown} ({rows[-1]['wall_s']:.0f} s)", flush=True)
    return rows


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.4f} ± {sd:.4f}" if len(values) > 1 else f"{mean:.4f}"


def verdict(spec: Kind, rows: list[dict], tried: str) -> list[str]:
    lines = []
    for metric, target in spec.targets.items():
        mean = statistics.fmean(r["metrics"][metric] for r in rows)
        if mean >= target:
            lines.append(f"- {metric}: mean {mean:.4f} ≥ target {target}: **met**.")
        else:
            lines.append(
                f"- {metric}: mean {mean:.4f} < target {target}: **missed by {target - mean:.4f}**; tried: {tried}."
            )
    return lines


def report(
    spec: Kind, args: argparse.Namespace, found: dict | None, search_s: float, rows: list[dict], recipe: str
) -> str:
    body = [
        f"## {heading(spec, found, rows)} ({spec.detail + '; ' if spec.detail else ''}issue 17): `{args.section}`",
        "",
    ]
    if rows:
        body += [*seed_table(spec, rows), ""]
    if found:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(found["trials"].items()))
        params = ", ".join(f"{k.removeprefix('train.')}={_value(v)}" for k, v in sorted(found["params"].items()))
        body += [
            f"Search: study `{found['study']}`, {counts} trials ({args.trials} finished asked), {search_s:.0f} s wall"
            f"{f' on {args.search_rows} training rows' if args.search_rows else ''}; best trial {found['best_trial']}: "
            f"validation {found['metric']} {found['best_value']:.4f} with {params}. Overlay `{found['overlay']}`.",
            "",
            *trial_table(found),
            "",
        ]
        tried = (
            f"{sum(found['trials'].values())} trials over {_space(found)} (the base recipe first, then the seeded "
            "TPE sampler, which draws at random for its first tune.startup_trials)"
        )
    else:
        body.append(f"No search (--trials 0): recipe {recipe}.")
        tried = f"the recipe {recipe}, no search"
    if rows:
        train = rows[0]["recipe"]
        recipe_line = (
            ", ".join(f"{k}={_value(train[k])}" for k in _SHOWN if k in train) + f", lora={train['lora']['enabled']}"
        )
        body += [f"Final recipe: {recipe_line}. Targets:", *verdict(spec, rows, tried)]
    total = search_s + sum(r["wall_s"] for r in rows)
    finals = f", {total - search_s:.0f} s for {len(rows)} final runs" if rows else "; no final runs (--search-only)"
    body += [f"Cost: {total:.0f} s wall in all ({search_s:.0f} s search{finals}).", f"Machine: {machine()}."]
    return "\n".join(body)


def heading(spec: Kind, found: dict | None, rows: list[dict]) -> str:
    """The question a section answers: the test quality of final runs (one section per data and model, whatever the
    recipe), or what a search without final runs found."""
    if not rows:
        return f"{spec.title}, recipe search"
    return f"{spec.title}: test quality, {'searched recipe' if found else 'no search'}"


def summary(spec: Kind, found: dict | None, rows: list[dict]) -> list[tuple[str, str, str]]:
    """The section's row of the summary table: the mean test figures against their targets, or the search's best."""
    question = heading(spec, found, rows).split(":")[0] + (f" ({spec.detail})" if spec.detail else "")
    if not rows:
        total = sum(found["trials"].values()) if found else 0
        best = (
            f"best trial {found['best_trial']}: validation {found['metric']} {found['best_value']:.4f}" if found else ""
        )
        return [(question, f"{best} of {total} trials", "—")]
    figures = ", ".join(f"{m} {spread([r['metrics'][m] for r in rows])}" for m in spec.targets)
    seeds = f" ({len(rows)} seed{'s' if len(rows) > 1 else ''})"
    return [(f"{question}: test quality", figures + seeds, ", ".join(f"{m} ≥ {t}" for m, t in spec.targets.items()))]


def seed_table(spec: Kind, rows: list[dict]) -> list[str]:
    header = "| seed | split (train/val/test) | epochs run (best) | " + " | ".join(f"test {m}" for m in spec.metrics)
    lines = [header + " | train time | wall time |", "|" + "---|" * (5 + len(spec.metrics))]
    for r in rows:
        split = f"{r['rows']['train']}/{r['rows']['validation']}/{r['rows']['test']}"
        figures = " | ".join(f"{r['metrics'][m]:.4f}" for m in spec.metrics)
        lines.append(
            f"| {r['seed']} | {split} | {r['train']['epochs_run']} ({r['train']['best_epoch']}) | {figures} "
            f"| {r['train_s']:.0f} s | {r['wall_s']:.0f} s |"
        )
    means = " | ".join(f"**{spread([r['metrics'][m] for r in rows])}**" for m in spec.metrics)
    lines.append(f"| mean ± sd | | | {means} | | {sum(r['wall_s'] for r in rows):.0f} s |")
    return lines


def trial_table(found: dict) -> list[str]:
    """Every trial of the study: what was tried and what it scored on the validation split."""
    names = _searched(found)
    lines = [
        f"| trial | state | validation {found['metric']} | "
        + " | ".join(n.removeprefix("train.") for n in names)
        + " |",
        "|" + "---|" * (3 + len(names)),
    ]
    for row in found["ran"]:
        value = "" if row["value"] is None else f"{row['value']:.4f}"
        shown = " | ".join(_value(row["params"][n]) if n in row["params"] else "" for n in names)
        lines.append(f"| {row['number']} | {row['state'].lower()} | {value} | {shown} |")
    return lines


_SHOWN = (
    "epochs",
    "early_stopping_patience",
    "batch_size",
    "learning_rate",
    "warmup_ratio",
    "weight_decay",
    "freeze",
    "freeze_embeddings",
)


def _value(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _searched(found: dict) -> list[str]:
    """The fields the study's trials set, sorted."""
    return sorted({k for row in found["ran"] for k in row["params"]})


def _space(found: dict) -> str:
    return ", ".join(n.removeprefix("train.") for n in _searched(found))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted([*KINDS, *DISTILL]))
    parser.add_argument("--trials", type=int, default=None, help="finished trials (0: no search)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--data", default=None, help="the data file or folder (default: ../shared/data/...)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--search-set", dest="search_overrides", action="append", default=[])
    parser.add_argument("--search-rows", type=int, default=None, help="search on this many training rows (0: all)")
    parser.add_argument("--max-rows", type=int, default=None, help="a smoke run on this many rows of the data")
    parser.add_argument("--recipe", default=None, help="with --trials 0: the overlay to train (default: the kind's)")
    parser.add_argument("--search-only", action="store_true", help="search, write the overlay, train no final runs")
    parser.add_argument("--section", default=None, help="RESULTS.md section (default: quality_<kind>)")
    parser.add_argument("--teacher-seeds", type=int, nargs="+", default=None, help="distill: teacher seeds")
    parser.add_argument("--alpha", type=float, default=0.5, help="distill: train.distill.alpha")
    parser.add_argument("--temperature", type=float, default=2.0, help="distill: train.distill.temperature")
    parser.add_argument(
        "--unlabeled", default=None, help="distill: also distil with train.distill.unlabeled=FILE (or conll-finance)"
    )
    parser.add_argument(
        "--search",
        type=int,
        default=0,
        help="distill: search alpha and T with tunepipe tune, to N trials (9: the grid)",
    )
    parser.add_argument("--work", default=None, help="distill: a work folder to keep; its finished runs are reused")
    args = parser.parse_args()
    if args.kind in DISTILL:
        spec = DISTILL[args.kind]
        args.section = args.section or args.kind.replace("-", "_")
        os.chdir(REPO)
        distill.run(args, spec, Path(args.data) if args.data else spec.data)
        return
    spec = KINDS[args.kind]
    args.trials = spec.trials if args.trials is None else args.trials
    args.search_rows = spec.search_rows if args.search_rows is None else (args.search_rows or None)
    args.section = args.section or f"quality_{args.kind.replace('-', '_')}"
    os.chdir(REPO)  # the overlay goes to configs/tuned/, inside the config's write root "."

    data = Path(args.data) if args.data else spec.data
    scratch = None
    if args.max_rows:
        scratch = tempfile.TemporaryDirectory(prefix="quality-smoke-")
        data = Path(scratch.name) / data.name
        subset(spec.data, data, args.max_rows)
    sets = [f"data.path={data}", *spec.sets, *args.overrides]
    base = [str(REPO / spec.config)]
    found, search_s = None, 0.0
    if args.trials:
        search_sets = [*sets, *args.search_overrides]
        if args.search_rows:
            search_sets.append(f"{spec.rows_field}={args.search_rows}")
        found, search_s, overlay = search(
            args.kind, base, search_sets, args.trials, Path(scratch.name) if scratch else None
        )
        recipe = str(overlay.relative_to(REPO)) if overlay.is_relative_to(REPO) else str(overlay)
    else:
        own = REPO / "configs" / "tuned" / f"quality-{args.kind if args.kind != 'mpnet' else 'fpb50'}.yaml"
        recipe_path = Path(args.recipe) if args.recipe else own
        recipe = str(recipe_path) if recipe_path.is_file() else "the base config"
        changed = [o for o in args.overrides if o.startswith(("train.", "model."))]
        recipe += "".join(f" --set {o}" for o in changed)
        overlay = recipe_path if recipe_path.is_file() else None
    layers = [*base, str(overlay)] if overlay else base
    rows = [] if args.search_only else final_runs(spec, layers, sets, args.seeds or list(spec.seeds))
    body = report(spec, args, found, search_s, rows, recipe)
    if args.max_rows:
        body += f"\n\n(Smoke run on {args.max_rows} rows of {spec.data.name}: the figures are not the benchmark's.)"
    write_section(args.section, body, summary(spec, found, rows))
    print(body)
    if scratch is not None:
        scratch.cleanup()


if __name__ == "__main__":
    sys.exit(main())
