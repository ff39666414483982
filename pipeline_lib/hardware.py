"""What the machine can do: device, bf16 support, usable cores; and the precision `auto` resolves to."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# int8 dot-product instructions (x86: AVX-512 VNNI, AVX-VNNI, AMX; Arm: SDOT, I8MM): without one, onnxruntime's int8
# MatMul kernels widen to 16 bits and an int8 graph is no faster than fp32 on the same cores
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


@dataclass(frozen=True)
class Capability:
    device: str  # "cuda" or "cpu"
    device_name: str
    bf16: bool
    cpu_flags: tuple[str, ...]
    cores: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def usable_cores() -> int:
    """Cores this process may run on (cgroup/affinity aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _cpuinfo_field(name: str, cpuinfo: Path) -> str:
    """The first `name : value` line of /proc/cpuinfo (empty where there is none or no such file)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith(name)), "")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name as the kernel reports it (else what `platform` knows)."""
    import platform

    return _cpuinfo_field("model name", cpuinfo) or platform.processor() or platform.machine()


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """Every instruction-set flag the CPU reports."""
    return frozenset(_cpuinfo_field("flags", cpuinfo).split())


def vector_isa(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The widest vector instruction set: avx512f, avx2, or neither (what CPU timings depend on most)."""
    flags = cpu_flags(cpuinfo)
    return next((isa for isa in ("avx512f", "avx2") if isa in flags), "no avx2")


def cpu_bf16_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, ...]:
    """The bf16 instruction-set flags the CPU reports (AMX or AVX-512 BF16)."""
    flags = cpu_flags(cpuinfo)
    return tuple(flag for flag in BF16_CPU_FLAGS if flag in flags)


def int8_dot_flags(flags: frozenset[str] | None = None) -> tuple[str, ...]:
    """The int8 dot-product flags among `flags` (default: this CPU's)."""
    flags = cpu_flags() if flags is None else flags
    return tuple(flag for flag in INT8_DOT_FLAGS if flag in flags)


def machine_signature(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """What timings depend on: the CPU model, its bf16 flags and the usable cores (for cache keys of measurements)."""
    return f"{cpu_model(cpuinfo)}|{','.join(cpu_bf16_flags(cpuinfo))}|{usable_cores()}"


def detect(force_cpu: bool = False) -> Capability:
    """Probe the accelerator (CUDA first) or the CPU."""
    import torch

    if not force_cpu and torch.cuda.is_available():
        return Capability(
            device="cuda",
            device_name=torch.cuda.get_device_name(0),
            bf16=bool(torch.cuda.is_bf16_supported()),
            cpu_flags=cpu_bf16_flags(),
            cores=usable_cores(),
        )
    flags = cpu_bf16_flags()
    import platform

    return Capability(
        device="cpu",
        device_name=platform.processor() or platform.machine(),
        bf16=bool(flags),
        cpu_flags=flags,
        cores=usable_cores(),
    )


def emulated_precision_warning(precision: str, capability: Capability) -> str | None:
    """What to tell a user who asked for bf16 where the hardware has none: it runs, emulated, many times slower."""
    if precision != "bf16" or capability.bf16:
        return None
    where = (
        "a GPU without bf16" if capability.device == "cuda" else "a CPU without bf16 instructions (AMX, AVX-512 BF16)"
    )
    return (
        f"train.precision=bf16 on {where}: bf16 is emulated there, many times slower "
        "than fp32 (on 2 AVX2 cores one FPB AllAgree epoch took over 6 min against 40 s in fp32); set "
        "train.precision=auto (fp32 on this machine) unless you want bf16's numerics"
    )


def resolve_precision(requested: str, capability: Capability) -> str:
    """`auto` → bf16 on a GPU that runs it natively, fp32 on every CPU; explicit choices are checked.

    fp32 on CPUs with bf16 too (AMX / AVX-512 BF16): there bf16 trains 1.5-1.7x faster, but on the same split files
    over 3 seeds it scored test macro-F1 0.9273 against fp32's 0.9308 on FPB AllAgree (validation 0.9311 against 0.9320;
    50Agree: 0.8274 against 0.8244, validation 0.8191 against 0.8190), and fp32 already trains at 2.1x the plain loop's
    speed there (bench/RESULTS.md recipe_allagree_bf16, recipe_50agree_bf16). `train.precision=bf16` opts in."""
    if requested == "auto":
        return "bf16" if capability.bf16 and capability.device == "cuda" else "fp32"
    if requested == "fp16" and capability.device != "cuda":
        raise ValueError("train.precision=fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    return requested
