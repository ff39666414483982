"""Shared helpers for benchmarks: the machine's description and a section writer for RESULTS.md."""

from __future__ import annotations

import platform
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    """CPU model, usable cores, memory and accelerator, in one line."""
    import torch

    from pipeline_lib.hardware import detect

    cap = detect()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    flags = ",".join(cap.cpu_flags) or "no bf16 flags"
    return f"{cpu}, {cap.cores} cores ({flags}), {mem_kb / 2**20:.0f} GiB, {gpu}; torch {torch.__version__}"


# FLOP (or int8 op) per cycle per core: AVX-512 FMA fp32 (2 units x 16 lanes x 2), AMX bf16 as issue 9 defines it,
# AVX-512 VNNI int8 (2 units x 64 multiply-adds x 2)
OPS_PER_CYCLE = {"fp32": 64, "bf16": 1024, "int8": 256}


def cpu_ghz() -> float:
    """The fastest clock /proc/cpuinfo reports, in GHz (2.0 when it reports none)."""
    mhz = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines() if "cpu MHz" in line]
    return (max(mhz) if mhz else 2000.0) / 1000


def peak_flops(precision: str, cores: int) -> float:
    """The machine's peak for `precision` (fp32, bf16 or int8) on `cores` cores, per second."""
    return cores * cpu_ghz() * 1e9 * OPS_PER_CYCLE[precision]


def timed_steps(cfg: Any, run: Any, steps: tuple[str, ...]) -> tuple[dict[str, dict], dict[str, float]]:
    """Run the library's `steps` in order on `run`: each step's summary and wall seconds, by step name."""
    from pipeline_lib.steps import run_step

    results, seconds = {}, {}
    for step in steps:
        start = time.perf_counter()
        results[step] = run_step(step, cfg, run).to_dict()
        seconds[step] = time.perf_counter() - start
        print(f"[{step}] {seconds[step]:.0f} s", flush=True)
    return results, seconds


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section `name` of bench/RESULTS.md, stamped with date and command."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python " + " ".join(["bench/" + Path(sys.argv[0]).name, *sys.argv[1:]])
    block = f"<!-- {name}:start -->\n{body.strip()}\n\n_Run {stamp}: `{command}`_\n<!-- {name}:end -->"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)
