"""Serving under concurrent load (issue 26): `tunepipe serve` beside `mlflow models serve` of the same registered
model and beside `tunepipe serve` as it was before batching (`--baseline REV`), in one run.

    python bench/serving_load.py [--seconds 15] [--max-requests 20000] [--workers 1] [--baseline REV] [--smoke]

In a throw-away workspace: trains and registers the default model on the packaged sample (a few steps; throughput
does not depend on how well it was trained), then for each server in turn starts it on 127.0.0.1, warms it up and
drives it with closed-loop clients (each sends its next request when the last is answered, over one keep-alive
connection) with real Financial PhraseBank sentences: 1, 8, 32 and 64 concurrent single-text clients and 4
clients x 32 texts. Each load runs `--seconds` (or until `--max-requests`), then the server is stopped. Before
the servers and again after them, the machine's ceiling: the bare `OnnxPredictor` of the same registered model in a
process of its own (no HTTP, no server, onnxruntime's default threads as `tunepipe serve` with one worker), on the
same texts, one text per call and 32 per call (two measurements that differ say the machine was not steady). A target missed is explained against that ceiling (Little's law: with N closed-loop
clients the mean latency is N / throughput, so it is at least N / ceiling). Reports texts/s and p50/p99 request
latency, the targets of the issue, and writes the `serving_load` section of bench/RESULTS.md (`--smoke`: 2 s per
load, the table printed, RESULTS.md untouched). Traffic never leaves 127.0.0.1; every load is bounded in requests
and time and every server is stopped on the way out.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from _results import FPB_50AGREE, REPO, child_env, child_json, machine, write_section

NAME = "financial-sentiment"
LOADS = [(1, 1), (8, 1), (32, 1), (64, 1), (4, 32)]  # (clients, texts per request)
BEFORE = "tunepipe serve before batching"
BARE = "OnnxPredictor in-process (ceiling)"
BARE_START, BARE_END = f"{BARE}, first", f"{BARE}, last"  # measured before and after the servers
CEILING_BATCHES = (1, 32)  # texts per predict() call of the bare predictor
CEILING = """
import json, sys, time
import numpy as np
from pipeline_lib.config import load_config
from pipeline_lib.registry.fast_lookup import local_model
from pipeline_lib.runtime.predictor import OnnxPredictor
reference, texts_file, seconds, max_calls = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
texts = json.loads(open(texts_file, encoding="utf-8").read())
predictor = OnnxPredictor.from_dir(local_model(load_config(None), reference).folder)
rows = []
for per_call in json.loads(sys.argv[5]):
    for i in range(8):  # warm-up: graphs, tokenizer
        predictor.predict([texts[(i * per_call + k) % len(texts)] for k in range(per_call)], batch_size=per_call)
    times, i = [], 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds and len(times) < max_calls:
        batch = [texts[(i + k) % len(texts)] for k in range(per_call)]
        i += per_call
        t = time.perf_counter()
        predictor.predict(batch, batch_size=per_call)
        times.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - start
    ms = np.array(times) * 1000
    rows.append({"clients": 1, "texts_per_request": per_call, "requests": len(times), "errors": 0,
                 "texts_per_s": len(times) * per_call / elapsed,
                 "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))})
print(json.dumps({"rows": rows}))
"""
FAST = ["train.max_steps=6", "train.batch_size=8", "gates.floors={}"]


def sentences(limit: int = 2000) -> list[str]:
    """Real Financial PhraseBank sentences (the packaged sample when the corpus is not beside the repository)."""
    if FPB_50AGREE.is_file():
        lines = FPB_50AGREE.read_text(encoding="latin-1").splitlines()
        return [line.rsplit("@", 1)[0].strip() for line in lines if "@" in line][:limit]
    import pandas as pd

    return pd.read_csv(REPO / "pipeline_lib/resources/financial_sentiment_sample.csv")["text"].astype(str).tolist()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def register(root: Path, smoke: bool) -> None:
    """Train and register the default model in `root` (its store: `root/.tunepipe`)."""
    (root / "data").mkdir()
    (root / "data" / "sample.csv").write_bytes(
        (REPO / "pipeline_lib/resources/financial_sentiment_sample.csv").read_bytes()
    )
    sets = ["data.path=data/sample.csv", *FAST, *(["export.select_runtime=false"] if smoke else [])]
    command = ["tunepipe", "run", *[a for s in sets for a in ("--set", s)]]
    subprocess.run(command, cwd=root, env=child_env(), check=True, capture_output=True)


@contextmanager
def started(command: list[str], cwd: Path, env: dict[str, str], port: int, log: Path) -> Iterator[None]:
    """Run a server in its own process group until it answers GET /health; always stopped (SIGTERM, then KILL)."""
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{command[0]} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{command[0]} not healthy:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


class Server:
    """How to ask one server for predictions."""

    def __init__(self, label: str, port: int, path: str, body: Callable[[list[str]], str]) -> None:
        self.label, self.port, self.path, self.body = label, port, path, body

    def ask(self, connection: http.client.HTTPConnection, texts: list[str]) -> None:
        connection.request("POST", self.path, self.body(texts), {"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{self.label}: HTTP {response.status}: {data[:300]!r}")


def load(server: Server, clients: int, per_request: int, texts: list[str], seconds: float, max_requests: int) -> dict:
    """Closed-loop clients for `seconds` (or `max_requests` in all): texts/s and latency percentiles."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    stop = threading.Event()
    budget = threading.Semaphore(max_requests)

    def client(n: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        i = n * 7919
        while not stop.is_set() and budget.acquire(blocking=False):
            batch = [texts[(i + k) % len(texts)] for k in range(per_request)]
            i += per_request
            start = time.perf_counter()
            try:
                server.ask(connection, batch)
            except (OSError, RuntimeError, http.client.HTTPException) as exc:
                errors.append(str(exc))
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                continue
            latencies[n].append(time.perf_counter() - start)
        connection.close()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(120)
    elapsed = time.perf_counter() - start
    every = np.array([x for per_client in latencies for x in per_client]) * 1000
    if errors:
        print(f"  {server.label}: {len(errors)} errors, first: {errors[0]}", flush=True)
    return {
        "clients": clients,
        "texts_per_request": per_request,
        "requests": int(every.size),
        "errors": len(errors),
        "texts_per_s": every.size * per_request / elapsed,
        "p50_ms": float(np.percentile(every, 50)) if every.size else float("nan"),
        "p99_ms": float(np.percentile(every, 99)) if every.size else float("nan"),
    }


def measure(server: Server, texts: list[str], seconds: float, max_requests: int) -> list[dict]:
    load(server, 4, 8, texts, min(2.0, seconds), max_requests)  # warm-up: graphs, tokenizer, connections
    rows = []
    for clients, per_request in LOADS:
        row = load(server, clients, per_request, texts, seconds, max_requests)
        print(
            f"  {server.label}: {clients} x {per_request}: {row['texts_per_s']:.0f} texts/s, "
            f"p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms ({row['requests']} requests)",
            flush=True,
        )
        rows.append(row)
    return rows


def baseline_source(root: Path, revision: str) -> Path:
    """This repository's code at `revision` (the server before batching), extracted under `root`."""
    target = root / "baseline-src"
    target.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def ceiling(root: Path, env: dict[str, str], texts: list[str], args: argparse.Namespace, label: str) -> list[dict]:
    """The bare predictor of the registered model in a process of its own, on `texts`: one row per batch size of
    `CEILING_BATCHES` (texts/s, p50/p99 of one predict() call)."""
    texts_file = root / "texts.json"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    command = [sys.executable, "-c", CEILING, f"{NAME}@champion", str(texts_file), str(args.seconds)]
    command += [str(args.max_requests), json.dumps(list(CEILING_BATCHES))]
    rows: list[dict] = child_json(command, root, env)["rows"]
    for row in rows:
        print(
            f"  {label}: {row['texts_per_request']} text(s) per call: {row['texts_per_s']:.0f} texts/s, "
            f"p50 {row['p50_ms']:.1f} ms per call",
            flush=True,
        )
    return rows


def run_servers(root: Path, texts: list[str], args: argparse.Namespace) -> dict[str, list[dict]]:
    env = child_env(MLFLOW_TRACKING_URI=f"sqlite:///{root / '.tunepipe' / 'mlflow.db'}")
    results: dict[str, list[dict]] = {BARE_START: ceiling(root, env, texts, args, BARE_START)}
    if args.baseline:
        source = baseline_source(root, args.baseline)
        port = free_port()
        command = [sys.executable, "-m", "flows.cli", "serve", "--model", f"{NAME}@champion", "--port", str(port)]
        with started(command, root, {**env, "PYTHONPATH": str(source)}, port, root / "baseline-serve.log"):
            before = Server(BEFORE, port, "/predict", lambda t: json.dumps({"texts": t}))
            results[BEFORE] = measure(before, texts, args.seconds, args.max_requests)
    port = free_port()
    command = ["tunepipe", "serve", "--model", f"{NAME}@champion", "--port", str(port)]
    command += ["--set", f"serve.workers={args.workers}", "--set", "serve.log=true"]
    with started(command, root, env, port, root / "tunepipe-serve.log"):
        tunepipe = Server("tunepipe serve", port, "/predict", lambda t: json.dumps({"texts": t}))
        results["tunepipe serve"] = measure(tunepipe, texts, args.seconds, args.max_requests)
    port = free_port()
    command = ["mlflow", "models", "serve", "-m", f"models:/{NAME}@champion", "--env-manager", "local"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with started(command, root, env, port, root / "mlflow-serve.log"):
        mlflow = Server(
            "mlflow models serve",
            port,
            "/invocations",
            lambda t: json.dumps({"dataframe_records": [{"text": x} for x in t]}),
        )
        results["mlflow models serve"] = measure(mlflow, texts, args.seconds, args.max_requests)
    results[BARE_END] = ceiling(root, env, texts, args, BARE_END)  # the two differ: the machine was not steady
    return results


def best_bare(results: dict[str, list[dict]]) -> dict[int, dict]:
    """The bare predictor's faster measurement (first or last) for each number of texts per call."""
    best: dict[int, dict] = {}
    for row in results.get(BARE_START, []) + results.get(BARE_END, []):
        n = row["texts_per_request"]
        if n not in best or row["texts_per_s"] > best[n]["texts_per_s"]:
            best[n] = row
    return best


def report(results: dict[str, list[dict]], args: argparse.Namespace) -> str:
    lines = [
        "| server | clients x texts | texts/s | p50 ms | p99 ms | requests | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, rows in results.items():
        for row in rows:
            lines.append(
                f"| {label} | {row['clients']} x {row['texts_per_request']} | {row['texts_per_s']:.0f} | "
                f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['requests']} | {row['errors']} |"
            )
    ours = {(r["clients"], r["texts_per_request"]): r for r in results["tunepipe serve"]}
    peer = {(r["clients"], r["texts_per_request"]): r for r in results["mlflow models serve"]}
    bare = best_bare(results)
    at32, own_batched, peer32 = ours[(32, 1)], ours[(4, 32)], peer[(32, 1)]
    share = at32["texts_per_s"] / own_batched["texts_per_s"]
    versus = at32["texts_per_s"] / peer32["texts_per_s"]
    top = max((r["texts_per_s"] for r in bare.values()), default=float("nan"))  # the machine's ceiling, texts/s
    needed = 32 / 0.100  # Little's law: 32 closed-loop clients at <= 100 ms each need >= 320 texts/s

    def verdict(ok: bool, miss: str) -> str:
        return "met" if ok else f"NOT met ({miss})"

    def ceiling_note(text: str) -> str:
        return f"; {text}" if bare else ""

    targets = [
        f"32 single-text clients vs the server's own 4 x 32: {share:.0%} (target >= 80 %): "
        + verdict(share >= 0.8, f"{0.8 - share:.0%} short")
        + ceiling_note(
            f"32 x 1 runs at {at32['texts_per_s'] / top:.0%} of the bare predictor's best {top:.0f} texts/s"
        ),
        f"32 single-text clients vs `mlflow models serve`: {versus:.1f}x (target >= 4x): "
        + verdict(
            versus >= 4,
            f"{4 - versus:.1f}x short"
            + ceiling_note(
                f"4x would be {4 * peer32['texts_per_s']:.0f} texts/s, {4 * peer32['texts_per_s'] / top:.1f}x the bare "
                f"predictor's ceiling of {top:.0f} texts/s on this machine, so at most about "
                f"{top / peer32['texts_per_s']:.1f}x is possible here"
            ),
        ),
        f"p99 at 32 single-text clients: {at32['p99_ms']:.0f} ms (target <= 100 ms): "
        + verdict(
            at32["p99_ms"] <= 100,
            f"{at32['p99_ms'] - 100:.0f} ms over"
            + ceiling_note(
                f"by Little's law the mean latency of 32 closed-loop clients is 32 / throughput, at least 32 / "
                f"{top:.0f} texts/s (the bare predictor's ceiling) = {32 / top * 1000:.0f} ms here; <= 100 ms needs "
                f">= {needed:.0f} texts/s, {needed / top:.1f}x this machine's ceiling"
            ),
        ),
    ]
    alone = bare.get(1)
    overhead = (
        f"; the bare predictor's own p50 at one text per call is {alone['p50_ms']:.2f} ms, so HTTP, server and "
        f"client add {ours[(1, 1)]['p50_ms'] - alone['p50_ms']:.2f} ms"
        if alone
        else ""
    )
    if BEFORE in results:
        before = next(r for r in results[BEFORE] if (r["clients"], r["texts_per_request"]) == (1, 1))
        change = ours[(1, 1)]["p50_ms"] / before["p50_ms"] - 1
        targets.append(
            f"idle batch-1 p50 (1 client): {ours[(1, 1)]['p50_ms']:.2f} ms vs {before['p50_ms']:.2f} ms before "
            f"batching ({args.baseline}), {change:+.0%} (target within 10 %): "
            + verdict(abs(change) <= 0.10 or change < 0, f"{change - 0.10:.0%} over")
            + overhead
        )
    else:
        targets.append(f"idle batch-1 p50 (1 client): {ours[(1, 1)]['p50_ms']:.2f} ms (no baseline run){overhead}")
    return (
        "## Serving under concurrent load (issue 26)\n\n"
        f"`tunepipe serve` (serve.workers={args.workers}, dynamic batching with the default serve.max_batch_size "
        "and serve.max_batch_wait_ms, prediction log on) and `mlflow models serve --env-manager local` of the same "
        "registered model (all-MiniLM-L6-v2, fine-tuned a few steps on the packaged sample)"
        + (f", and `tunepipe serve` as of {args.baseline} (before batching)" if args.baseline else "")
        + ", on 127.0.0.1, "
        f"closed-loop clients over keep-alive connections with real Financial PhraseBank sentences, {args.seconds:g} s "
        "per load (the load generator runs on the same cores). The ceiling rows: the bare `OnnxPredictor` of the same "
        "model in a process of its own, no HTTP, on the same sentences, 1 and 32 texts per predict() call (latency: "
        "one call), measured first and again last (the targets use the faster of the two).\n\n"
        + "\n".join(lines)
        + "\n\nTargets (issue 26):\n"
        + "".join(f"\n- {t}" for t in targets)
        + f"\n\nMachine: {machine()}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each load")
    parser.add_argument("--max-requests", type=int, default=20000, help="most requests of each load")
    parser.add_argument("--workers", type=int, default=1, help="serve.workers of tunepipe serve")
    parser.add_argument(
        "--baseline", default="6a4284b", help="git revision of the server before batching, measured too ('' to skip)"
    )
    parser.add_argument("--smoke", action="store_true", help="2 s loads, print only (RESULTS.md untouched)")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.max_requests = 2.0, min(args.max_requests, 2000)
    texts = sentences()
    with tempfile.TemporaryDirectory(prefix="bench-serving-load-") as tmp:
        root = Path(tmp)
        print("registering the model ...", flush=True)
        register(root, args.smoke)
        results = run_servers(root, texts, args)
    body = report(results, args)
    print(body)
    if not args.smoke:
        write_section("serving_load", body, summary(results))


def summary(results: dict[str, list[dict]]) -> list[tuple[str, str, str]]:
    """The row of RESULTS.md's summary table: 1 and 32 single-text clients against the bare predictor's ceiling."""
    ours = {(r["clients"], r["texts_per_request"]): r for r in results["tunepipe serve"]}
    peer = {(r["clients"], r["texts_per_request"]): r for r in results["mlflow models serve"]}
    top = max((r["texts_per_s"] for r in best_bare(results).values()), default=float("nan"))
    figure = (
        f"32 clients: {ours[(32, 1)]['texts_per_s']:.0f} texts/s, p99 {ours[(32, 1)]['p99_ms']:.0f} ms "
        f"({ours[(32, 1)]['texts_per_s'] / peer[(32, 1)]['texts_per_s']:.1f}x mlflow; bare predictor ceiling "
        f"{top:.0f} texts/s); 1 client p50 {ours[(1, 1)]['p50_ms']:.1f} ms"
    )
    return [("Serving under concurrent load", figure, "32 clients >= 4x mlflow, p99 <= 100 ms")]


if __name__ == "__main__":
    main()
