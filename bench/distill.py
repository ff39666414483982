"""Distillation (issue 31), run as `python bench/quality.py distill|distill-all|distill-conll`: on FPB 50Agree or
AllAgree (stratified 80/10/10, seed 42) or CoNLL-2003 (per-word distillation), the mpnet-base teacher, the default
model trained plain, and the default model distilled from that teacher (`train.distill`), same recipe and seeds; test
figures (mean ± sd), wall times, and each model's batch-1 latency and batch-32 throughput from its export step's
runtime table, measured in the same run.

Every model runs the library's steps validate → tokenize → train → export → evaluate (no Prefect, no registry) in a
scratch folder with one store, so the teacher's logits are computed once (through its ONNX graph) and served from the
step cache to every distilled seed. The scratch folder is removed at the end, unless `--work DIR` names one to keep:
then a run whose figures are already in DIR is read back, not trained again, so a later invocation adds teacher or
student seeds (or another alpha and temperature) beside the runs it has, with the teacher's logits still cached.

`--search N` first searches alpha and temperature for the student with `tunepipe tune` (the first student seed,
selected on validation: the given pair, then a 3x3 grid), and where another pair wins, trains every student seed with
it too, as its own row with its own verdict.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _results import REPO, SHARED_DATA, commit, machine, subset, timed_steps, write_section

STEPS = ("validate", "tokenize", "train", "export", "evaluate")
METRICS = ("accuracy", "macro_f1")
FPB_SPLIT = "stratified 80/10/10, seed 42 (FinBERT's figures use it)"


@dataclass(frozen=True)
class Distillation:
    """One dataset's distillation bench: its config, data, --set overrides, test metrics and targets."""

    title: str
    config: str  # relative to the repository
    data: Path
    sets: tuple[str, ...]
    targets: dict[str, float]  # for the distilled student; none: the teacher's figure is the reference
    metrics: tuple[str, ...] = METRICS
    split: str = FPB_SPLIT
    teacher_sets: tuple[str, ...] = ()  # the teacher's own overrides (a base-size model's learning rate)


ROW_FILE = "bench_row.json"  # a finished run's figures, in its run folder
# the alpha and temperature search: its study (every grid point trained in full: the median pruner stopped six of
# nine after one or two epochs in the first search, distill-alpha-temperature, whose result is kept in search.json)
SEARCH_STUDY = "distill-alpha-temperature-full"
SEARCH_FILE = f"search-{SEARCH_STUDY}.json"  # its result, in the work folder
DISTILLED = "default model, distilled"
SEARCHED = "default model, distilled, searched alpha and T"
# `--search`: the base values (alpha 0.5, T 2) first, then the rest of this grid, enqueued in this order
ALPHAS, TEMPERATURES = (0.2, 0.5, 0.8), (1.0, 2.0, 4.0)
WITH_UNLABELED = "default model, distilled + unlabeled texts"
# Words of company and market news: what makes a CoNLL-2003 (Reuters, 1996) sentence an unlabeled text for a
# financial-sentiment teacher to label (`--unlabeled conll-finance`).
FINANCE_WORDS = re.compile(
    r"\b(percent|pct|profits?|losses|sales|revenues?|shares|earnings|dividends?|turnover|net income|operating|"
    r"quarter|fiscal|million|billion|mln|bln|stake|acquisition|merger|takeover|shareholders|investors|stocks?|"
    r"bonds?|orders|contract|forecast|outlook)\b",
    re.IGNORECASE,
)


def conll_finance_sentences(conll_dir: Path, out: Path) -> int:
    """Write the CoNLL-2003 sentences (all three files) that read like company or market news, one per line: 8-60
    tokens, at least 6 words, not a headline or table row (at most a third of the words in capitals), a finance word,
    each once. Returns how many."""
    sentences, tokens = [], []
    for name in ("eng.train", "eng.testa", "eng.testb"):
        for line in (conll_dir / name).read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("-DOCSTART-"):
                tokens.append(line.split()[0])
            elif tokens:
                sentences.append(tokens)
                tokens = []
    if tokens:
        sentences.append(tokens)
    kept: dict[str, None] = {}
    for sentence in sentences:
        text, words = " ".join(sentence), [t for t in sentence if t.isalpha()]
        capitals = sum(w.isupper() and len(w) > 1 for w in words)
        if 8 <= len(sentence) <= 60 and len(words) >= 6 and capitals <= len(words) / 3 and FINANCE_WORDS.search(text):
            kept.setdefault(text)
    out.write_text("".join(f"{text}\n" for text in kept), encoding="utf-8")
    return len(kept)


def unlabeled_texts(choice: str | None, work: Path) -> Path | None:
    """`--unlabeled`: a file of texts, or `conll-finance` (built in the work folder from ../shared/data/conll2003)."""
    if not choice:
        return None
    if choice == "conll-finance":
        out = work / "unlabeled-conll-finance.txt"
        print(f"[unlabeled] {conll_finance_sentences(SHARED_DATA / 'conll2003', out)} CoNLL-2003 sentences", flush=True)
        return out
    return Path(choice).resolve()


def recipe_of(base: list[str], sets: list[str]) -> dict:
    """The resolved `model` and `train` sections a run with these settings trains with (the config files' values
    included: a kept run from before a recipe change must not pass for one after it)."""
    from pipeline_lib.config import load_config

    cfg = load_config(base, sets)
    return json.loads(
        json.dumps({"model": cfg.model.model_dump(mode="json"), "train": cfg.train.model_dump(mode="json")})
    )


def recipe_changes(kept: dict | None, now: dict) -> list[str]:
    """`section.field: kept → now` for every field both recipes have and disagree on (a field added to the config
    since the kept run is not a change)."""
    if kept is None:
        return []
    changes = []
    for section, fields in now.items():
        for name, value in fields.items():
            before = kept.get(section, {}).get(name, value)
            if before != value:
                changes.append(f"{section}.{name}: {before!r} → {value!r}")
    return changes


def train_one(base: list[str], sets: list[str], work: Path, name: str, metrics: tuple[str, ...] = METRICS) -> dict:
    """One model through the library's steps in `work/name`, sharing `work/store`; its figures and timings (read
    back from `work/name` when a kept work folder already holds that run with the same settings and recipe)."""
    kept, recipe = work / name / ROW_FILE, recipe_of(base, sets)
    if kept.is_file():
        row = json.loads(kept.read_text())
        if row.get("sets") != sets:
            raise SystemExit(
                f"{kept}: that run had other settings ({row.get('sets')}); remove {work / name} or use another --work"
            )
        changed = recipe_changes(row.get("recipe"), recipe)
        if changed:
            raise SystemExit(
                f"{kept}: the recipe changed since that run ({'; '.join(changed)}); remove {work / name} or use "
                "another --work"
            )
        print(f"[{name}] kept from an earlier invocation ({kept})", flush=True)
        return row
    from pipeline_lib.config import load_config
    from pipeline_lib.environment import apply_quiet_env
    from pipeline_lib.layout import RunDir

    apply_quiet_env()
    placed = [f"paths.store={work / 'store'}", f"paths.artifacts={work / 'artifacts'}"]
    cfg = load_config(base, [*sets, *placed])
    start = time.perf_counter()
    results, seconds = timed_steps(cfg, RunDir(work / name), STEPS)
    runtime = results["export"].get("runtime") or {}
    chosen = next((c for c in runtime.get("candidates", []) if c.get("runtime") == runtime.get("chosen")), {})
    row = {
        "name": name,
        "seed": cfg.train.seed,
        "metrics": results["evaluate"]["metrics"],
        "rows": results["validate"]["rows"],
        "epochs_run": results["train"].get("epochs_run"),
        "train_s": seconds["train"],
        "wall_s": time.perf_counter() - start,
        "runtime": runtime.get("chosen"),
        "p50_ms_batch1": chosen.get("p50_ms_batch1"),
        "samples_per_s_batch32": chosen.get("samples_per_s_batch32"),
        "distill": results["train"].get("distill"),
        "run_dir": str(work / name),
        "sets": sets,
        "recipe": recipe,
        "measured": f"{time.strftime('%Y-%m-%d', time.gmtime())}, {commit()}",
    }
    kept.write_text(json.dumps(row, indent=1, default=str))
    shown = " ".join(f"{m}={row['metrics'][m]:.4f}" for m in metrics)
    print(f"[{name}] {shown} ({row['wall_s']:.0f} s)", flush=True)
    return row


def search_alpha_temperature(base: list[str], sets: list[str], work: Path, trials: int) -> dict:
    """`tunepipe tune` over train.distill.alpha and temperature for the student with `sets` (its seed, its teacher):
    the base values first, then the ALPHAS x TEMPERATURES grid, to `trials` finished trials (each trained in full:
    no pruner), selected on validation. Its result and wall seconds, kept in the work folder and
    read back when the settings match (more trials continue the study)."""
    kept = work / SEARCH_FILE
    earlier = json.loads(kept.read_text()) if kept.is_file() else None
    if earlier and earlier.get("sets") != sets:
        raise SystemExit(
            f"{kept}: that search had other settings ({earlier.get('sets')}); remove it or use another --work"
        )
    if earlier and earlier["finished"] >= trials:
        print(f"[search] kept from an earlier invocation ({kept})", flush=True)
        return earlier
    from pipeline_lib.commands.tune import tune
    from pipeline_lib.config import load_config
    from pipeline_lib.environment import apply_quiet_env

    apply_quiet_env()
    alpha, temperature = "train.distill.alpha", "train.distill.temperature"
    space = f"{{{alpha}: {{choices: {list(ALPHAS)}}}, {temperature}: {{choices: {list(TEMPERATURES)}}}}}"
    placed = [
        f"paths.store={work / 'store'}",
        f"paths.artifacts={work / 'artifacts'}",
        f"paths.write_roots=[., {work}]",
        f"tune.overlay_dir={work / 'tuned'}",
        f"tune.study={SEARCH_STUDY}",
        "tune.pruner=none",
        f"tune.trials={trials}",
        f"tune.space={space}",
    ]
    given = load_config(base, [*sets, *placed]).train.distill
    pairs = [(a, t) for a in ALPHAS for t in TEMPERATURES if (a, t) != (given.alpha, given.temperature)]
    grid = ", ".join(f"{{{alpha}: {a}, {temperature}: {t}}}" for a, t in pairs)  # the baseline runs first anyway
    cfg = load_config(base, [*sets, *placed, f"tune.enqueue=[{grid}]"])
    start = time.perf_counter()
    found = tune(cfg, base).to_dict()
    found |= {
        "sets": sets,
        "pruner": cfg.tune.pruner,
        "finished": found["trials"].get("complete", 0) + found["trials"].get("pruned", 0),
        "wall_s": time.perf_counter() - start + (earlier or {}).get("wall_s", 0.0),
        "measured": f"{time.strftime('%Y-%m-%d', time.gmtime())}, {commit()}",
    }
    kept.write_text(json.dumps(found, indent=1, default=str))
    return found


def search_table(found: dict) -> list[str]:
    """Every trial of the alpha and temperature search with its validation figure, best first."""
    lines = [
        f"| trial | alpha | temperature | validation {found['metric']} | state |",
        "|---|---|---|---|---|",
    ]
    ran = [r for r in found["ran"] if r["state"] != "WAITING"]  # queued grid pairs past the trial count
    ranked = sorted(ran, key=lambda r: (r["value"] is None, -(r["value"] or 0.0), r["number"]))
    for r in ranked:
        value = "—" if r["value"] is None else f"{r['value']:.4f}"
        params = r["params"]
        lines.append(
            f"| {r['number']} | {params.get('train.distill.alpha', '—')} | "
            f"{params.get('train.distill.temperature', '—')} | {value} | {r['state'].lower()} |"
        )
    return lines


def search_section(found: dict, args: argparse.Namespace) -> list[str]:
    """What the alpha and temperature search tried, what won on validation, and what was trained with it."""
    best = found["params"]
    alpha, temperature = best["train.distill.alpha"], best["train.distill.temperature"]
    kept = (alpha, temperature) == (args.alpha, args.temperature)
    outcome = (
        "the given values win, so the distilled rows above are the searched recipe"
        if kept
        else f"the row `{SEARCHED}` trains every seed with them"
    )
    stopped = sum(r["state"] == "PRUNED" for r in found["ran"])
    pruned = (
        "every trial trained in full"
        if found.get("pruner", "median") == "none"
        else f"the median pruner stopped {stopped} of them after their first epochs, before their learning rate decayed"
    )
    return [
        f"Search over alpha and temperature (`tunepipe tune`, the first student seed, selected on validation "
        f"{found['metric']}; alpha {args.alpha} and T {args.temperature} first, then the grid alpha "
        f"{'/'.join(map(str, ALPHAS))} x T {'/'.join(f'{t:g}' for t in TEMPERATURES)}; {pruned}): best trial {found['best_trial']}, alpha {alpha}, T {temperature:g}, "
        f"validation {found['best_value']:.4f}; {outcome}. {found['finished']} trials, {found['wall_s']:.0f} s, "
        f"measured {found['measured']}. The validation split is small: a difference under its spread over seeds "
        "(the plain rows') is not a finding.",
        "",
        *search_table(found),
    ]


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else f"{mean:.4f}"


def figure(rows: list[dict], key: str, unit: str) -> str:
    values = [r[key] for r in rows if r.get(key) is not None]
    return f"{statistics.median(values):.1f} {unit}" if values else "—"


def report(
    title: str,
    groups: dict[str, list[dict]],
    targets: dict[str, float],
    args: argparse.Namespace,
    spec: Distillation | None = None,
    found: dict | None = None,
) -> str:
    metrics, split = (spec.metrics, spec.split) if spec else (METRICS, FPB_SPLIT)
    config = spec.config if spec else "configs/financial_phrasebank.yaml"
    named = " | ".join(f"test {m}" for m in metrics)
    lines = [
        f"## {title}: teacher, plain and distilled student (issue 31): `{args.section}`",
        "",
        f"Split: {split}; recipe: {config} for all three; distillation: alpha {args.alpha}, temperature "
        f"{args.temperature}, the teacher's first seed. Latency and throughput: the export step's runtime table (the "
        "served graph timed in full, export.benchmark on; median over seeds).",
        "",
        f"| model | seeds | {named} | train s (mean) | served runtime | batch-1 p50 | batch-32 |",
        "|---|---|" + "---|" * len(metrics) + "---|---|---|---|",
    ]
    for label, rows in groups.items():
        if not rows:
            continue
        lines.append(
            f"| {label} | {', '.join(str(r['seed']) for r in rows)} | "
            + " | ".join(spread([r["metrics"][m] for r in rows]) for m in metrics)
            + f" | {statistics.fmean(r['train_s'] for r in rows):.0f} | {rows[0]['runtime'] or '—'} | "
            f"{figure(rows, 'p50_ms_batch1', 'ms')} | {figure(rows, 'samples_per_s_batch32', 'rows/s')} |"
        )
    columns = " | ".join(metrics)
    lines += ["", "Per run:", "", f"| run | seed | rows train/val/test | epochs run | {columns} | wall s | measured |"]
    lines.append("|---|---|---|---|" + "---|" * len(metrics) + "---|---|")
    for rows in groups.values():
        for r in rows:
            split = f"{r['rows']['train']}/{r['rows']['validation']}/{r['rows']['test']}"
            shown = " | ".join(f"{r['metrics'][m]:.4f}" for m in metrics)
            lines.append(
                f"| {r['name']} | {r['seed']} | {split} | {r['epochs_run']} | {shown} | {r['wall_s']:.0f} | {r.get('measured', '—')} |"
            )
    lines += [
        "",
        "Targets for the distilled student (FinBERT's figures):"
        if targets
        else "No target set: the teacher's figures above are the reference.",
    ]
    plain = groups.get("default model, plain") or []
    shown_as = {DISTILLED: "distilled", SEARCHED: "distilled with the searched alpha and T"}
    for label in (DISTILLED, SEARCHED, WITH_UNLABELED):
        distilled = groups.get(label) or []
        if label != DISTILLED and not distilled:
            continue
        which = shown_as.get(label, "distilled + unlabeled")
        for metric, target in targets.items():
            if not distilled:
                lines.append(f"- {metric} ≥ {target}: not measured (no distilled run)")
                continue
            mean = statistics.fmean(r["metrics"][metric] for r in distilled)
            gain = f"; plain {statistics.fmean(r['metrics'][metric] for r in plain):.4f}" if plain else ""
            verdict = "**met**" if mean >= target else f"**missed by {target - mean:.4f}**"
            lines.append(f"- {metric}: {which} mean {mean:.4f}{gain}; target ≥ {target}: {verdict}.")
    if found:
        lines += ["", *search_section(found, args)]
    total = sum(r["wall_s"] for rows in groups.values() for r in rows) + (found or {}).get("wall_s", 0.0)
    lines += ["", f"Cost: {total:.0f} s wall in all. Machine: {machine()}."]
    return "\n".join(lines)


def summary(
    title: str, groups: dict[str, list[dict]], targets: dict[str, float], metrics: tuple[str, ...] = METRICS
) -> list[tuple[str, str, str]]:
    parts = []
    for label, rows in groups.items():
        if rows:
            figures = ", ".join(f"{m} {spread([r['metrics'][m] for r in rows])}" for m in metrics)
            parts.append(f"{label}: {figures} ({len(rows)} seed{'s' if len(rows) > 1 else ''})")
    wanted = ", ".join(f"{m} ≥ {t}" for m, t in targets.items()) or "the teacher's figures, no target"
    target = f"distilled: {wanted}"
    return [(f"{title}: teacher, plain and distilled student", "; ".join(parts), target)]


def run(args: argparse.Namespace, spec: Distillation, data: Path) -> None:
    base, metrics = [str(REPO / spec.config)], spec.metrics
    data = data.resolve()  # one spelling of the data's path, so a kept work folder's runs match whatever the mount
    scratch = contextlib.nullcontext(args.work) if args.work else tempfile.TemporaryDirectory(prefix="bench-distill-")
    with scratch as tmp:
        work = Path(tmp).resolve()
        work.mkdir(parents=True, exist_ok=True)
        if args.max_rows and data.is_dir():
            raise SystemExit(
                f"--max-rows copies rows of one file, {data} is a folder: --set data.max_train_sentences=N"
            )
        if args.max_rows:
            subset(data, work / data.name, args.max_rows)
            data = work / data.name
        # export.benchmark: every candidate timed in full (not the probe a lone candidate gets), PyTorch beside
        common = [f"data.path={data}", *spec.sets, "export.benchmark=true", *args.overrides]
        seeds = args.seeds or [42, 43, 44]
        teacher_seeds = args.teacher_seeds or seeds[:1]
        groups: dict[str, list[dict]] = {"mpnet-base teacher": [], "default model, plain": []}
        groups[DISTILLED] = []
        unlabeled = unlabeled_texts(args.unlabeled, work)
        if unlabeled:
            groups[WITH_UNLABELED] = []
        for seed in teacher_seeds:
            teacher_sets = [*common, "model.name=mpnet-base", *spec.teacher_sets, f"train.seed={seed}"]
            groups["mpnet-base teacher"].append(train_one(base, teacher_sets, work, f"teacher-{seed}", metrics))
        teacher = groups["mpnet-base teacher"][0]["run_dir"]
        distill = [
            f"train.distill.teacher={teacher}",
            f"train.distill.alpha={args.alpha}",
            f"train.distill.temperature={args.temperature}",
        ]
        searched, found = [], None
        if args.search:
            found = search_alpha_temperature(base, [*common, *distill, f"train.seed={seeds[0]}"], work, args.search)
            best = found["params"]
            if (best["train.distill.alpha"], best["train.distill.temperature"]) != (args.alpha, args.temperature):
                searched = [f"train.distill.{key.rsplit('.', 1)[1]}={value}" for key, value in best.items()]
                groups[SEARCHED] = []
        for seed in seeds:
            plain = [*common, f"train.seed={seed}"]
            groups["default model, plain"].append(train_one(base, plain, work, f"plain-{seed}", metrics))
            distilled = train_one(base, [*plain, *distill], work, f"distilled-{seed}", metrics)
            groups[DISTILLED].append(distilled)
            if searched:
                tuned = train_one(base, [*plain, *distill, *searched], work, f"distilled-searched-{seed}", metrics)
                groups[SEARCHED].append(tuned)
            if unlabeled:
                more = [*plain, *distill, f"train.distill.unlabeled={unlabeled}"]
                groups[WITH_UNLABELED].append(train_one(base, more, work, f"distilled-unlabeled-{seed}", metrics))
        body = report(spec.title, groups, spec.targets, args, spec, found)
        if args.max_rows:
            body += f"\n\n(Smoke run on {args.max_rows} rows of {data.name}: the figures are not the benchmark's.)"
        write_section(args.section, body, summary(spec.title, groups, spec.targets, metrics))
        print(body)
