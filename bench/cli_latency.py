"""How long a user waits for `tunepipe predict` on a registered champion (issue 16: target <= 2 s wall on a cached
champion, median of repeated runs), beside its reference in the same run.

    python bench/cli_latency.py [--repeats 10]

In a throw-away workspace: trains and registers the default model on the packaged sample (a few steps), then times,
each in a fresh process: `python -c pass` (the interpreter's own start), the first `tunepipe predict` (nothing cached:
the ONNX folder is downloaded and verified), `tunepipe predict` on the cached copy (median of --repeats), and the
reference: the same prediction the way `predict` did it before (MLflow client resolving the alias, the cached folder,
the predictor with transformers' tokenizer). Writes the `cli_latency` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import REPO, child_env, machine, write_section

TEXTS = ["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn", "The company will hold its AGM in May."]
FAST = ["train.max_steps=6", "train.batch_size=8", "gates.floors={}", "export.select_runtime=false"]
REFERENCE = """
import json, sys
from pipeline_lib.config import load_config
from pipeline_lib.registry import store
from pipeline_lib.runtime.predictor import OnnxPredictor
cfg = load_config(None)
client = store.connect(cfg)
version = store.resolve(client, store.ModelRef.parse(sys.argv[1]))
predictor = OnnxPredictor.from_dir(store.onnx_dir_for(cfg, client, version.name, version.version))
predictor.tokenizer  # the transformers tokenizer the predictor loaded before (issue 16)
for row in predictor.predict(sys.argv[2:]):
    print(json.dumps(row))
"""


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=child_env(), check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-cli-latency-"))
    (root / "data").mkdir()
    (root / "data" / "sample.csv").write_bytes(
        (REPO / "pipeline_lib/resources/financial_sentiment_sample.csv").read_bytes()
    )
    sets = [a for s in ["data.path=data/sample.csv", *FAST] for a in ("--set", s)]
    subprocess.run(["tunepipe", "run", *sets], cwd=root, env=child_env(), check=True, capture_output=True)
    ref = "financial-sentiment@champion"
    predict = ["tunepipe", "predict", "--model", ref, *TEXTS]

    floor = statistics.median(timed([sys.executable, "-c", "pass"], root) for _ in range(args.repeats))
    first = timed(predict, root)
    cached = [timed(predict, root) for _ in range(args.repeats)]
    reference = [timed([sys.executable, "-c", REFERENCE, ref, *TEXTS], root) for _ in range(args.repeats)]
    median, ref_median = statistics.median(cached), statistics.median(reference)
    verdict = "met" if median <= 2.0 else f"NOT met (by {median - 2.0:.2f} s)"
    body = f"""## `tunepipe predict` wall time (issue 16)

Two sentences, the default model registered in a local sqlite store; each figure a fresh process, wall seconds.

| command | median s | min s | max s |
|---|---|---|---|
| `python -c pass` (interpreter start) | {floor:.2f} | | |
| `tunepipe predict`, first call (downloads and verifies the ONNX folder) | {first:.2f} | | |
| **`tunepipe predict`, cached champion** (x{args.repeats}) | **{median:.2f}** | {min(cached):.2f} | {max(cached):.2f} |
| reference: the same through the MLflow client and transformers' tokenizer (x{args.repeats}) | {ref_median:.2f} | {min(reference):.2f} | {max(reference):.2f} |

Target <= 2 s on a cached champion: {verdict}; {ref_median / median:.1f}x faster than the reference.
Machine: {machine()}."""
    write_section(
        "cli_latency",
        body,
        [
            (
                "`tunepipe predict` wall time, cached champion",
                f"{median:.2f} s median ({ref_median / median:.1f}x faster than MLflow + transformers)",
                "≤ 2 s",
            )
        ],
    )
    print(body)


if __name__ == "__main__":
    main()
