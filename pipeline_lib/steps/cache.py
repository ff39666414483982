"""Content-addressed step outputs: what each step reads (data, upstream files, tokenizer, config, code),
hashed into a key, and a store of each step's run-directory outputs under that key.

The orchestrator (Prefect) decides hit or miss from the key; this module only computes keys, explains
them, and stores/restores the files, so a step served from cache leaves the same files in the run directory
as one that ran. Gate and register are never cached: they read the live registry.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pipeline_lib.config import PipelineConfig
from pipeline_lib.data.versions import content_md5, file_md5
from pipeline_lib.layout import RunDir, cache_staging_dir, publish_cache_entry, read_json, write_json

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # pipeline_lib
CACHE_VERSION = "1"  # bump to invalidate every stored output
# Files whose bytes differ between identical runs (timings, run paths): never part of a content hash.
VOLATILE = frozenset({"training_args.bin", "result.json"})
LIBRARIES = ("torch", "transformers", "tokenizers", "datasets", "onnx", "onnxruntime", "great-expectations")


@dataclass(frozen=True)
class StepSpec:
    """What a step reads and writes, like a DVC stage: inputs (fingerprint names), config fields, outputs."""

    module: str
    inputs: tuple[str, ...]
    params: tuple[str, ...]
    outputs: tuple[str, ...]


# Config sections are whole (not single fields) so a step that starts reading a new field stays correct.
STEP_SPECS: dict[str, StepSpec] = {
    # validate also compares the training split with the champion's (drift), so the champion is one of its inputs
    "validate": StepSpec(
        "steps.validate",
        ("data_file", "champion"),
        ("task", "data", "model.name", "gates.drift"),
        ("data", "validation"),
    ),
    "tokenize": StepSpec("steps.tokenize", ("splits", "tokenizer"), ("task", "data", "model"), ("tokenized",)),
    # a distilled run also reads its teacher (an alias may move to another teacher under the same config)
    "train": StepSpec("steps.train", ("tokenized", "teacher"), ("task", "data", "model", "train"), ("model", "train")),
    "export": StepSpec(
        "steps.export", ("model", "splits"), ("task", "data", "model", "export", "gates"), ("onnx", "export")
    ),
    # classification scores the test split through the served graph the export step chose
    "evaluate": StepSpec("steps.evaluate", ("model", "splits", "onnx"), ("task", "data", "model", "train"), ("eval",)),
}


@dataclass(frozen=True)
class Fingerprint:
    """A step's cache key and the named hashes it was made of (logged to say why a step ran)."""

    step: str
    key: str
    parts: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dir_md5(path: Path, ignore: frozenset[str] = VOLATILE) -> str:
    """MD5 over a folder's files (relative path + content), skipping volatile file names."""
    digest = hashlib.md5()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.name not in ignore):
        digest.update(f"{file.relative_to(path).as_posix()}:{file_md5(file)}\n".encode())
    return digest.hexdigest()


def _tokenizer_fingerprint(cfg: PipelineConfig, run: RunDir) -> str:
    from pipeline_lib.steps.tokenize import tokenizer_fingerprint
    from pipeline_lib.training.modeling import load_tokenizer, resolve_model_source

    return tokenizer_fingerprint(load_tokenizer(resolve_model_source(cfg.model.name)))[:16]


def _existing(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(path)
    return path


INPUTS: dict[str, Callable[[PipelineConfig, RunDir], str]] = {
    "data_file": lambda cfg, run: content_md5(_existing(Path(cfg.data.path))),
    "splits": lambda cfg, run: dir_md5(_existing(run.root / "data")),
    "tokenizer": _tokenizer_fingerprint,
    "tokenized": lambda cfg, run: read_json(_existing(run.tokenized / "meta.json"))["cache_key"],
    "model": lambda cfg, run: dir_md5(_existing(run.model_dir)),
    "onnx": lambda cfg, run: dir_md5(run.onnx_dir) if run.onnx_dir.is_dir() else "none",
    "champion": lambda cfg, run: _champion(cfg),
    "teacher": lambda cfg, run: _teacher(cfg, run),
}


def _teacher(cfg: PipelineConfig, run: RunDir) -> str:
    """The teacher's part of the key, checked against the labels validate inferred into `run` (data.labels unset)."""
    from pipeline_lib.steps import with_inferred_labels
    from pipeline_lib.steps.teacher import teacher_fingerprint

    return teacher_fingerprint(with_inferred_labels(cfg, run) if cfg.train.distill.teacher else cfg)


def _champion(cfg: PipelineConfig) -> str:
    """The champion's version and run (read without MLflow where the store allows), or `none`."""
    from pipeline_lib.registry.fast_lookup import aliased

    found = aliased(cfg)
    return "none" if found is None else f"v{found.version}:{found.run_id}"


def config_part(cfg: PipelineConfig, fields: tuple[str, ...]) -> str:
    """Hash of the named config sections/fields (`train`, `data.labels`)."""
    dumped = cfg.model_dump(mode="json", exclude={"data": {"inferred_labels"}, "output": True})
    picked = {}
    for name in fields:
        value: Any = dumped
        for key in name.split("."):
            value = value[key]
        picked[name] = value
    return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:16]


@cache
def code_version(module: str) -> str:
    """Hash of a step module's source and every `pipeline_lib` module it imports (transitively), plus the
    versions of the libraries that shape the outputs: editing an unrelated module keeps the cache."""
    digest = hashlib.sha256(CACHE_VERSION.encode())
    for path in sorted(module_closure(f"pipeline_lib.{module}")):
        digest.update(path.relative_to(PACKAGE_ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    for lib in LIBRARIES:
        try:
            digest.update(f"{lib}=={importlib.metadata.version(lib)}".encode())
        except importlib.metadata.PackageNotFoundError:
            continue
    return digest.hexdigest()[:16]


def _module_file(name: str) -> Path | None:
    parts = name.split(".")[1:]
    base = PACKAGE_ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pipeline_lib"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline_lib"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from pipeline_lib import x`
    return found


def module_closure(root: str) -> set[Path]:
    seen: set[Path] = set()
    todo = [root]
    while todo:
        path = _module_file(todo.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        todo.extend(_imports(path))
    return seen


def fingerprint(step: str, cfg: PipelineConfig, run: RunDir) -> Fingerprint | None:
    """The step's cache key from its inputs' content, config fields and code; None when the step is not
    cacheable (gate, register) or an input is missing (the step will run and report it)."""
    spec = STEP_SPECS.get(step)
    if spec is None:
        return None
    try:
        parts = {name: INPUTS[name](cfg, run) for name in spec.inputs}
    except (FileNotFoundError, KeyError):
        return None
    parts["config"] = config_part(cfg, spec.params)
    parts["code"] = code_version(spec.module)
    key = hashlib.sha256(json.dumps({"step": step, **parts}, sort_keys=True).encode()).hexdigest()[:24]
    return Fingerprint(step, key, parts)


class StepStore:
    """Step outputs kept under `<paths.store>/cache/steps/<step>/<key>/`, plus each step's last fingerprint."""

    def __init__(self, cfg: PipelineConfig) -> None:
        self.root = cfg.paths.cache_dir / "steps"

    def entry(self, fp: Fingerprint) -> Path:
        return self.root / fp.step / fp.key

    def has(self, fp: Fingerprint) -> bool:
        return (self.entry(fp) / "fingerprint.json").is_file()

    def save(self, fp: Fingerprint, run: RunDir) -> Path:
        """Copy the step's outputs from the run directory into the store: staged under a private name, then
        renamed; when a concurrent run stored the same key first, its entry is kept (same inputs)."""
        target = self.entry(fp)
        staging = cache_staging_dir(target)
        try:
            for rel in STEP_SPECS[fp.step].outputs:
                source = run.root / rel
                if source.is_dir():
                    ignore = shutil.ignore_patterns("checkpoints")
                    shutil.copytree(source, staging / "outputs" / rel, ignore=ignore)
            write_json(staging / "fingerprint.json", fp.to_dict())
            publish_cache_entry(staging, target, marker="fingerprint.json")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        write_json(self.root / fp.step / "last.json", fp.to_dict())
        return target

    def restore(self, fp: Fingerprint, run: RunDir) -> bool:
        """Copy stored outputs into the run directory; False when the entry is gone (the step must run)."""
        if not self.has(fp):
            return False
        for rel in STEP_SPECS[fp.step].outputs:
            stored, dest = self.entry(fp) / "outputs" / rel, run.root / rel
            shutil.rmtree(dest, ignore_errors=True)
            if stored.is_dir():
                shutil.copytree(stored, dest)
        write_json(self.root / fp.step / "last.json", fp.to_dict())
        return True

    def last(self, step: str) -> dict[str, Any] | None:
        path = self.root / step / "last.json"
        return read_json(path) if path.is_file() else None


def explain_miss(fp: Fingerprint, last: dict[str, Any] | None) -> str:
    """Why a step ran: which of its input hashes differ from the last time it ran or was restored."""
    if last is None:
        return "first run of this step with this store"
    changed = [
        f"{name} {str(last['parts'].get(name))[:10]}→{value[:10]}"
        for name, value in fp.parts.items()
        if last["parts"].get(name) != value
    ]
    return "changed: " + ", ".join(changed) if changed else "no cached result for these inputs"


def describe(fp: Fingerprint) -> str:
    return ", ".join(f"{name} {value[:10]}" for name, value in fp.parts.items())
