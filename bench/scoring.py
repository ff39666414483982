"""Batch scoring throughput and memory: `tunepipe score` against the ecosystem's routes, on one input built from
Financial PhraseBank 50Agree (each sentence with an id, a timestamp and a source, repeated with variations).

    python bench/scoring.py [--rows 200000] [--spark-rows N] [--pipeline-rows N] [--train-steps 60]

Trains the default model a few steps on FPB 50Agree (quality does not matter here: the encoder's size does) and
registers it in a throw-away store, then runs each route as its own process, sampling the RSS of its process tree
(Spark's JVM included) every 0.1 s:

- (a) `tunepipe score` local, at `--rows` and at a tenth of it (is the peak RSS flat as the input grows?);
- (b) `mlflow models predict` on `models:/NAME@champion` and the same CSV (the whole input and output in memory),
  at both sizes too;
- (b') transformers' `pipeline("text-classification")` on the fine-tuned PyTorch model, batch 32, over the first
  `--pipeline-rows` texts in memory (default: all);
- (c) the bare `OnnxPredictor` over the same texts in memory, in slices of `score.chunk_rows` texts (the calls the
  engine makes, without reading or writing), batch 32 (this engine's limit; loading excluded);
- (d) `tunepipe score --engine spark --spark-master local[2]`, both routes (map_in_pandas, spark_udf), over the
  first `--spark-rows` rows (default: all).

rows/s is rows over the process's wall time (start-up included) for (a), (b), (d), and over the prediction loop for
(b') and (c). Writes the `scoring` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
from _results import FPB_50AGREE, REPO, SHARED_DATA, child_env, machine, write_section

from pipeline_lib.config import ScoreConfig

NAME = "financial-phrasebank"
CHUNK_ROWS = ScoreConfig().chunk_rows  # the default: the texts the engine hands the predictor per call
VARIATIONS = (
    lambda s: s,
    lambda s: f"UPDATE: {s}",
    lambda s: s.replace("EUR", "USD").replace("euro", "dollar"),
    lambda s: f"{s} (company release)",
    lambda s: s.lower(),
    lambda s: f"{s} Analysts had expected otherwise.",
    lambda s: s.replace(" mn ", " million "),
)


def build_input(path: Path, rows: int) -> None:
    """`rows` rows of id, published (a timestamp), source and text: FPB sentences, each pass with a variation."""
    lines = FPB_50AGREE.read_bytes().decode("iso-8859-1").splitlines()
    sentences = [line.rpartition("@")[0].strip() for line in lines if "@" in line]
    start = datetime(2026, 1, 1)
    texts = [VARIATIONS[(i // len(sentences)) % len(VARIATIONS)](sentences[i % len(sentences)]) for i in range(rows)]
    pd.DataFrame(
        {
            "id": range(rows),
            "published": [(start + timedelta(minutes=i)).isoformat() for i in range(rows)],
            "source": [f"wire-{i % 5}" for i in range(rows)],
            "text": texts,
        }
    ).to_csv(path, index=False)


def measured(command: list[str], cwd: Path, env: dict[str, str]) -> dict:
    """Run `command`; its wall seconds, the peak RSS of its process tree (MB), and its last stdout line."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{out[-3000:]}\n{err[-3000:]}")
    last = out.strip().splitlines()[-1] if out.strip() else ""
    return {"wall_s": time.perf_counter() - started, "peak_mb": peak / 2**20, "last": last}


ONNX_LOOP = """
import json, sys, time
import pandas as pd
sys.path.insert(0, {repo!r})
from pipeline_lib.runtime.predictor import OnnxPredictor
texts = pd.read_csv({csv!r})["text"].tolist()
predictor = OnnxPredictor.from_dir({folder!r})
start = time.perf_counter()
for i in range(0, len(texts), {chunk}):
    predictor.predict(texts[i:i + {chunk}], batch_size=32)
print(json.dumps({{"rows": len(texts), "seconds": time.perf_counter() - start}}))
"""

PIPELINE_LOOP = """
import json, time
import pandas as pd
from transformers import pipeline
texts = pd.read_csv({csv!r})["text"].tolist()[:{limit}]
classify = pipeline("text-classification", model={model!r}, tokenizer={model!r}, device=-1, top_k=None)
start = time.perf_counter()
classify(texts, batch_size=32, truncation=True)
print(json.dumps({{"rows": len(texts), "seconds": time.perf_counter() - start}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--spark-rows", type=int, default=None, help="rows for (d) (default: --rows)")
    parser.add_argument("--pipeline-rows", type=int, default=None, help="rows for (b') (default: --rows)")
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--skip", default="", help="routes to leave out, e.g. b,d")
    parser.add_argument("--reuse", type=Path, help="a work folder of an earlier run: its registered model, no training")
    parser.add_argument(
        "--from-results",
        type=Path,
        help="write the section again from an earlier run's results.json (give that run's other options)",
    )
    parser.add_argument("--measured-at", default=None, help="with --from-results: the commit that measured them")
    args = parser.parse_args()
    if args.from_results:
        results = json.loads(args.from_results.read_text())
        big, small = args.rows, args.rows // 10
        body = report(results, args, small, big)
        write_section("scoring", body, headline(results, small, big))
        print(body)
        return
    skip = set(filter(None, args.skip.split(",")))
    work = args.reuse or Path(tempfile.mkdtemp(prefix="tunepipe-bench-scoring-"))
    print(f"working in {work}", flush=True)
    sets = [
        f"data.path={FPB_50AGREE}",
        f"paths.read_roots=[., {SHARED_DATA}]",
        f"train.max_steps={args.train_steps}",
        "gates.floors={}",
        "export.select_runtime=false",
    ]
    set_args = [a for s in sets for a in ("--set", s)]
    config = str(REPO / "configs" / "financial_phrasebank.yaml")
    env = child_env(PYTHONPATH=str(REPO), MLFLOW_TRACKING_URI=f"sqlite:///{work}/.tunepipe/mlflow.db")
    if not args.reuse:
        subprocess.run(
            [sys.executable, "-m", "flows.cli", "run", "--config", config, *set_args], cwd=work, env=env, check=True
        )
    run_dirs = sorted((work / "artifacts").glob("**/model/config.json"))
    model_dir = run_dirs[-1].parent
    small, big = max(args.rows // 10, 1), args.rows
    for rows in (small, big):
        build_input(work / f"in-{rows}.csv", rows)
    tunepipe = [sys.executable, "-m", "flows.cli", "score", "--model", f"{NAME}@champion", "--config", config]
    results: dict[str, dict] = {}

    def record(key: str, rows: int, m: dict, seconds: float | None = None) -> None:
        rate = rows / (seconds if seconds else m["wall_s"])
        results[key] = {"rows": rows, "rows_per_s": rate, "peak_mb": m["peak_mb"], "wall_s": m["wall_s"]}
        print(f"{key}: {rows} rows, {rate:.1f} rows/s, peak RSS {m['peak_mb']:.0f} MB", flush=True)

    for rows in (small, big):
        shutil.rmtree(work / f"out-a-{rows}", ignore_errors=True)
        m = measured([*tunepipe, f"in-{rows}.csv", "--output", f"out-a-{rows}", *set_args], work, env)
        record(f"a@{rows}", rows, m)
    folder = next((work / ".tunepipe" / "models" / NAME).glob("v*"))  # the verified copy (a) made
    if "b" not in skip:
        for rows in (small, big):
            command = ["mlflow", "models", "predict", "-m", f"models:/{NAME}@champion", "-i", f"in-{rows}.csv"]
            command += ["-t", "csv", "-o", f"out-b-{rows}.json", "--env-manager", "local"]
            record(f"b@{rows}", rows, measured(command, work, env))
    if "b'" not in skip:
        limit = args.pipeline_rows or big
        script = PIPELINE_LOOP.format(csv=str(work / f"in-{big}.csv"), model=str(model_dir), limit=limit)
        m = measured([sys.executable, "-c", script], work, env)
        timing = json.loads(m["last"])
        record("b'", timing["rows"], m, timing["seconds"])
    m = measured(
        [
            sys.executable,
            "-c",
            ONNX_LOOP.format(repo=str(REPO), csv=str(work / f"in-{big}.csv"), folder=str(folder), chunk=CHUNK_ROWS),
        ],
        work,
        env,
    )
    timing = json.loads(m["last"])
    record("c", timing["rows"], m, timing["seconds"])
    if "d" not in skip:
        rows = args.spark_rows or big
        if rows != big:
            build_input(work / f"in-{rows}.csv", rows)
        for route in ("map_in_pandas", "spark_udf"):
            shutil.rmtree(work / f"out-d-{route}", ignore_errors=True)
            command = [*tunepipe, f"in-{rows}.csv", "--output", f"out-d-{route}", "--engine", "spark"]
            command += ["--spark-master", "local[2]", "--set", f"score.spark_route={route}", *set_args]
            record(f"d {route}", rows, measured(command, work, env))
    (work / "results.json").write_text(json.dumps(results, indent=2))
    write_section("scoring", report(results, args, small, big), headline(results, small, big))
    print(report(results, args, small, big))


def report(results: dict[str, dict], args: argparse.Namespace, small: int, big: int) -> str:
    names = {
        f"a@{small}": f"(a) tunepipe score, local ({small:,} rows)",
        f"a@{big}": f"(a) tunepipe score, local ({big:,} rows)",
        f"b@{small}": f"(b) mlflow models predict ({small:,} rows)",
        f"b@{big}": f"(b) mlflow models predict ({big:,} rows)",
        "b'": "(b') transformers pipeline, PyTorch, batch 32",
        "c": f"(c) bare OnnxPredictor in memory, {CHUNK_ROWS:,} texts per call, batch 32",
        "d map_in_pandas": "(d) --engine spark local[2], mapInPandas over the shipped ONNX folder",
        "d spark_udf": "(d) --engine spark local[2], mlflow.pyfunc.spark_udf",
    }
    hidden = {"reuse", "from_results", "measured_at"}
    command = "python bench/scoring.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, "") and k not in hidden
    )
    measured_at = getattr(args, "measured_at", None)
    lines = [
        "## Batch scoring: `tunepipe score` against the ecosystem's routes (issue 25)",
        "",
        f"Machine: {machine()}. Command: `{command}`. Model: the default encoder (MiniLM-L6, 22.7M) fine-tuned a few "
        "steps on FPB 50Agree, max_length 64, registered in a throw-away store. Input: a CSV of FPB 50Agree sentences "
        "with id, timestamp and source, repeated with variations."
        + (
            f" Smoke size ({big:,} rows, under 200,000): start-up weighs on (a), (b) and (d); for orientation only."
            if big < 200_000
            else ""
        )
        + (
            f" Measured at commit {measured_at}; this section was written again from its results.json."
            if measured_at
            else ""
        ),
        "",
        "| route | rows | rows/s | peak RSS (MB) | wall (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in names.items():
        if key in results:
            r = results[key]
            lines.append(
                f"| {label} | {r['rows']:,} | {r['rows_per_s']:.1f} | {r['peak_mb']:.0f} | {r['wall_s']:.0f} |"
            )
    a, c = results.get(f"a@{big}"), results.get("c")
    notes = []
    if a and c:
        ratio = a["rows_per_s"] / c["rows_per_s"]
        notes.append(f"(a) / (c) = {ratio:.0%} (target ≥ 90 %: {met(ratio >= 0.9)})")
    pipe = results.get("b'")
    if a and pipe:
        ratio = a["rows_per_s"] / pipe["rows_per_s"]
        notes.append(f"(a) / (b') = {ratio:.1f}x (target ≥ 3x: {met(ratio >= 3)})")
    if a and f"b@{big}" in results:
        b = results[f"b@{big}"]
        ratio = a["rows_per_s"] / b["rows_per_s"]
        notes.append(
            f"(a) / (b) = {ratio:.2f}x rows/s (target ≥ 1x: {met(ratio >= 1)}), peak RSS {a['peak_mb']:.0f} vs "
            f"{b['peak_mb']:.0f} MB"
        )
    if a and f"a@{small}" in results:
        growth = a["peak_mb"] / results[f"a@{small}"]["peak_mb"]
        notes.append(
            f"(a) peak RSS at {big:,} vs {small:,} rows: {growth:.2f}x (target within 1.2x: {met(growth <= 1.2)})"
        )
    if f"b@{big}" in results and f"b@{small}" in results:
        notes.append(
            f"(b) peak RSS at {big:,} vs {small:,} rows: {results[f'b@{big}']['peak_mb'] / results[f'b@{small}']['peak_mb']:.2f}x"
        )
    notes += reasons(results, small, big)
    spark = [k for k in ("d map_in_pandas", "d spark_udf") if k in results]
    if len(spark) == 2:
        faster = max(spark, key=lambda k: results[k]["rows_per_s"])
        notes.append(f"faster Spark route: {faster.removeprefix('d ')}")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def reasons(results: dict[str, dict], small: int, big: int) -> list[str]:
    """Why a missed target was missed, from how the routes work."""
    from pipeline_lib.runtime.selection import int8_skip_reason

    a, b, pipe = results.get(f"a@{big}"), results.get(f"b@{big}"), results.get("b'")
    out = []
    if a and b and a["rows_per_s"] < b["rows_per_s"]:
        out.append(
            "why (a) < (b): `mlflow models predict` hands the predictor the whole input at once, which it sorts by "
            f"length as a whole; (a) sorts within each chunk of {CHUNK_ROWS:,} rows (its unit of progress and "
            "resumption), so a little more padding; holding everything is what costs (b) its peak RSS"
        )
    skipped = int8_skip_reason()
    if a and pipe and a["rows_per_s"] < 3 * pipe["rows_per_s"] and skipped:
        out.append(
            f"why (a) < 3x (b'): the served graph is fp32 (int8 candidates not timed here: {skipped}), and "
            "onnxruntime fp32 over PyTorch fp32 is what is left on this CPU"
        )
    return out


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def headline(results: dict[str, dict], small: int, big: int) -> list[tuple[str, str, str]]:
    """The summary table's row: (a)'s rows/s beside (c), (b') and (b), and its peak RSS as the input grows."""
    a, c, b, pipe = results.get(f"a@{big}"), results.get("c"), results.get(f"b@{big}"), results.get("b'")
    if not (a and c and b and pipe and f"a@{small}" in results):
        return []
    figure = (
        f"{a['rows_per_s']:.0f} rows/s on {big:,} rows: {a['rows_per_s'] / c['rows_per_s']:.0%} of the bare "
        f"predictor, {a['rows_per_s'] / pipe['rows_per_s']:.1f}x transformers' pipeline, "
        f"{a['rows_per_s'] / b['rows_per_s']:.2f}x mlflow models predict at {a['peak_mb']:.0f} vs {b['peak_mb']:.0f} "
        f"MB peak RSS; RSS {a['peak_mb'] / results[f'a@{small}']['peak_mb']:.2f}x at 10x the rows"
    )
    target = "≥ 90 % of the predictor, ≥ 3x the pipeline, ≥ 1x mlflow, RSS within 1.2x"
    return [("Batch scoring, `tunepipe score` local", figure, target)]


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
