import pytest

from pipeline_lib.hardware import (
    Capability,
    cpu_bf16_flags,
    cpu_model,
    emulated_precision_warning,
    machine_signature,
    resolve_precision,
    vector_isa,
)


def cap(device="cpu", bf16=False):
    return Capability(device=device, device_name="x", bf16=bf16, cpu_flags=("avx512_bf16",) if bf16 else (), cores=2)


def test_auto_resolves_to_fp32_without_bf16_hardware():
    assert resolve_precision("auto", cap(bf16=False)) == "fp32"


def test_auto_resolves_to_bf16_on_a_bf16_gpu_and_to_fp32_on_every_cpu():
    assert resolve_precision("auto", cap(device="cuda", bf16=True)) == "bf16"
    assert resolve_precision("auto", cap(device="cuda", bf16=False)) == "fp32"
    assert resolve_precision("auto", cap(bf16=True)) == "fp32"  # AMX / AVX-512 BF16: opt in with bf16
    assert resolve_precision("bf16", cap(bf16=True)) == "bf16"


def test_explicit_precision_is_kept_and_fp16_needs_cuda():
    assert resolve_precision("fp32", cap(bf16=True)) == "fp32"
    with pytest.raises(ValueError, match="fp16 needs a CUDA"):
        resolve_precision("fp16", cap())


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags : fpu sse avx512f avx512_bf16 amx_tile\n")
    assert cpu_bf16_flags(info) == ("avx512_bf16",)
    info.write_text("processor : 0\nflags : fpu sse avx2\n")
    assert cpu_bf16_flags(info) == ()


def test_model_vector_isa_and_signature_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nmodel name : AMD EPYC\nflags : fpu fma avx avx2 sha_ni\n")
    assert (cpu_model(info), vector_isa(info)) == ("AMD EPYC", "avx2")
    assert machine_signature(info).startswith("AMD EPYC||")  # model | no bf16 flags | cores
    info.write_text("model name : AMD EPYC\nflags : avx2 avx512f avx512_bf16\n")
    assert vector_isa(info) == "avx512f" and machine_signature(info).startswith("AMD EPYC|avx512_bf16|")
    assert vector_isa(tmp_path / "missing") == "no avx2" and cpu_bf16_flags(tmp_path / "missing") == ()


def test_bf16_asked_for_where_the_hardware_has_none_is_warned_about_naming_the_option():
    warning = emulated_precision_warning("bf16", cap(bf16=False))
    assert warning and "train.precision=auto" in warning and "a CPU without bf16 instructions" in warning
    assert "a GPU without bf16" in emulated_precision_warning("bf16", cap(device="cuda", bf16=False))
    assert emulated_precision_warning("bf16", cap(bf16=True)) is None  # native: nothing to say
    assert emulated_precision_warning(resolve_precision("auto", cap(bf16=False)), cap(bf16=False)) is None
