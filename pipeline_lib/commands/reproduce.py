"""`tunepipe reproduce NAME@ALIAS|NAME/VERSION`: rebuild a registered model from its lineage alone, in a scratch
directory, and compare its test metrics with the recorded ones. The registry is read, never written.

1. The lineage gives the git commit (and whether the work tree was dirty), the data path with its md5 and DVC
   md5, the split md5s, the resolved config (the run's `config.yaml`), the test metrics, the device, precision and
   library versions. A dirty registration is refused unless `allow_dirty` (the commit may not hold the code that
   trained it), and so is data that no DVC version records (md5 differing from the pointer's).
2. A detached git worktree of this repository at the commit, in a scratch directory (removed at the end unless
   `keep`). The working directory inside it is the one `reproduce` runs from, relative to the repository root, so
   the config's relative paths mean what they meant at registration.
3. The data restored by DVC as committed there (`dvc.api.DVCFileSystem` at that revision: the local cache first,
   then the remote); data committed to git comes with the worktree. Its md5 must be the recorded one.
4. The recorded config, with overrides of where to write only (`paths.*` and `registry.tracking_uri`, which the
   config hash leaves out), hashed by the commit's own code: it must give the recorded `config.hash`.
5. validate → tokenize → train → export → evaluate, each as `python -m flows.cli step NAME` (the interface the DVC
   stages use) with the worktree as working tree and sole `PYTHONPATH` entry: **the commit's code runs**, on this
   interpreter's libraries; before the first step, a probe checks that `pipeline_lib` and `flows` import from the
   worktree. `code="installed"` runs the installed tunepipe instead (for projects whose repository holds data and
   configs but not tunepipe's code). The steps never open the registry, `MLFLOW_TRACKING_URI` is removed from
   their environment and their store is inside the scratch directory.
6. Recorded vs reproduced test metrics and per-epoch training history (losses, validation metrics), within
   `tolerance` (exact by default when both runs were on CPU), split md5s, and which library versions, device or
   precision differ.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline_lib.config import PipelineConfig
from pipeline_lib.data.versions import content_md5
from pipeline_lib.registry.libraries import differences, library_versions
from pipeline_lib.registry.lineage import lineage

STEPS = ("validate", "tokenize", "train", "export", "evaluate")  # the run's own: evaluate scores the served graph
GPU_TOLERANCE = 0.01  # default when either run used a GPU, whose kernels are not bit-for-bit deterministic
CodeSource = Literal["commit", "installed"]
_PROBE = "import json, flows, pipeline_lib; print(json.dumps([pipeline_lib.__file__, flows.__file__]))"
_HASH = (
    "import sys; from pipeline_lib.config import load_config; "
    "print(load_config(sys.argv[1], sys.argv[2:]).config_hash())"
)


class ReproduceError(RuntimeError):
    """The model cannot be rebuilt from its lineage; the message says what is missing and what to do."""


@dataclass
class MetricRow:
    metric: str
    recorded: float | None
    reproduced: float | None
    diff: float | None
    within: bool


@dataclass
class ReproduceResult:
    model: str
    name: str
    version: str
    commit: str
    code: str  # where the steps' `pipeline_lib` was imported from
    data: str  # how the data was restored
    tolerance: float
    tolerance_reason: str
    reproduced: bool
    reason: str
    metrics: list[MetricRow]
    history: dict[str, Any] | None  # per-epoch losses and validation metrics: values compared, largest |diff|
    splits: dict[str, dict[str, Any]]
    environment: dict[str, dict[str, Any]]  # device, precision: recorded vs reproduced
    libraries: dict[str, list[str | None]]  # only those that differ: [recorded, here]
    libraries_recorded: bool
    notes: list[str] = field(default_factory=list)
    scratch: str | None = None  # kept only with `keep`
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reproduce(
    cfg: PipelineConfig,
    ref: str,
    *,
    tolerance: float | None = None,
    allow_dirty: bool = False,
    code: CodeSource = "commit",
    keep: bool = False,
    progress: Callable[[str], None] = lambda line: None,
) -> ReproduceResult:
    """Rebuild `ref` from its lineage in a scratch worktree and compare; see the module docstring for the steps."""
    start = time.perf_counter()
    if tolerance is not None and tolerance < 0:
        raise ReproduceError(f"--tolerance {tolerance}: must be >= 0 (0 means exactly equal)")
    if code not in ("commit", "installed"):
        raise ReproduceError(f"--code {code!r}: expected 'commit' (the recorded commit's code) or 'installed'")
    info = lineage(cfg, ref)
    label = f"{info['name']}/{info['version']}"
    notes = check_lineage(info, label, allow_dirty)
    commit = info["git"]["commit"]
    repo, prefix = _repository(commit, label)
    scratch = Path(tempfile.mkdtemp(prefix=f"tunepipe-reproduce-{info['name']}-v{info['version']}-"))
    worktree = scratch / "worktree"
    try:
        _git(repo, "worktree", "add", "--detach", "--quiet", str(worktree), commit)
        cwd = worktree / prefix
        cwd.mkdir(parents=True, exist_ok=True)
        data = _restore_data(repo, prefix, commit, cwd, info, label)
        progress(f"[data] {data}")
        env, code_at = step_environment(worktree, cwd, code, commit)
        progress(f"[code] {code_at}")
        config_file, sets = _write_config(scratch, info)
        _check_config_hash(config_file, sets, cwd, env, info, label)
        results = _run_steps(scratch / "run", config_file, sets, cwd, env, commit, progress)
        outcome = _compare(info, results, scratch / "run", tolerance, label)
    finally:
        _remove_worktree(repo, worktree, scratch, keep)
    return ReproduceResult(
        model=ref,
        name=info["name"],
        version=info["version"],
        commit=commit,
        code=code_at,
        data=data,
        notes=notes + outcome.pop("notes"),
        scratch=str(scratch) if keep else None,
        seconds=round(time.perf_counter() - start, 1),
        **outcome,
    )


def check_lineage(info: dict[str, Any], label: str, allow_dirty: bool) -> list[str]:
    """Refuse what the lineage cannot rebuild; the notes for what it can, with a caveat."""
    commit, dirty = info["git"]["commit"], str(info["git"]["dirty"])
    if not commit or commit == "unknown":
        raise ReproduceError(f"{label} was registered outside a git repository: its lineage names no commit")
    notes = []
    if dirty != "False":
        state = "uncommitted changes" if dirty == "True" else "an unknown state"
        if not allow_dirty:
            raise ReproduceError(
                f"{label} was registered from a work tree with {state} (git.dirty={dirty}): commit {commit[:12]} may "
                "not hold the code and config that trained it. Pass --allow-dirty to rebuild it from the commit "
                "anyway (a match then proves only that the commit reproduces it)"
            )
        notes.append(f"registered from a work tree with {state} (git.dirty={dirty}); rebuilt from the commit anyway")
    data = info["data"]
    if not data.get("md5") or data["md5"] == "None":
        raise ReproduceError(f"{label}: its lineage records no data md5 for {data.get('path')}")
    if data.get("dvc_md5") not in (None, "None") and data["dvc_md5"] != data["md5"]:
        raise ReproduceError(
            f"{label} was trained on {data['path']} with md5 {data['md5']}, which no DVC version records (its .dvc "
            f"pointer named {data['dvc_md5']}): the data was changed without `dvc add` (or `tunepipe data add`), so "
            "it cannot be restored"
        )
    return notes


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ReproduceError(f"git {' '.join(args)} failed in {cwd}: {done.stderr.strip()}")
    return done.stdout.strip()


def _repository(commit: str, label: str) -> tuple[Path, str]:
    """This repository's root and the working directory's path inside it; the commit must be in it."""
    here = Path.cwd()
    try:
        root = Path(_git(here, "rev-parse", "--show-toplevel"))
    except ReproduceError:
        raise ReproduceError(
            f"{here} is not inside a git repository: run reproduce from the project that registered {label} "
            f"(its lineage names commit {commit[:12]})"
        ) from None
    prefix = _git(here, "rev-parse", "--show-prefix")
    if subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=root, capture_output=True).returncode:
        raise ReproduceError(
            f"commit {commit} (the lineage of {label}) is not in the repository at {root}: fetch it (git fetch), "
            "or run from the clone that registered the model"
        )
    return root, prefix


def _restore_data(repo: Path, prefix: str, commit: str, cwd: Path, info: dict[str, Any], label: str) -> str:
    """Put the recorded data version at its configured path inside the worktree; how it was restored."""
    path, md5, dvc_md5 = info["data"]["path"], info["data"]["md5"], info["data"].get("dvc_md5")
    in_repo = posixpath.normpath(posixpath.join(prefix, path))
    if Path(path).is_absolute() or in_repo.startswith(".."):
        raise ReproduceError(
            f"{label} was trained on {path}, outside the repository: reproduce restores data only from the "
            "repository's git and DVC versions"
        )
    target = cwd / path
    if target.exists():
        how = f"{path} from git at commit {commit[:12]}"
    elif dvc_md5 in (None, "None"):
        raise ReproduceError(
            f"{path} (md5 {md5}) is neither committed to git at {commit[:12]} nor DVC-tracked there: the lineage of "
            f"{label} names no version to restore it from"
        )
    else:
        _dvc_get(repo, commit, in_repo, target, dvc_md5, label)
        how = f"{path} md5 {dvc_md5} from DVC (cache or remote) as committed at {commit[:12]}"
    found = content_md5(target)
    if found != md5:
        raise ReproduceError(f"{path} restored at commit {commit[:12]} has md5 {found}, not {md5} as {label} records")
    return how


def _dvc_get(repo: Path, commit: str, path: str, target: Path, md5: str, label: str) -> None:
    from dvc.api import DVCFileSystem

    pointer = subprocess.run(["git", "show", f"{commit}:{path}.dvc"], cwd=repo, capture_output=True, text=True)
    if pointer.returncode == 0:
        committed = ((yaml.safe_load(pointer.stdout) or {}).get("outs") or [{}])[0].get("md5")
        if committed != md5:
            raise ReproduceError(
                f"{path}.dvc at commit {commit[:12]} names md5 {committed}, but {label} was trained on DVC version "
                f"{md5}: the pointer was not committed before registering"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fs = DVCFileSystem(str(repo), rev=commit)
        fs.get(path, str(target), recursive=fs.isdir(path))
    except FileNotFoundError as exc:
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)
        raise ReproduceError(
            f"data version {md5} of {path} (the lineage of {label}) is in neither the DVC cache nor the remote "
            f"({_dvc_places(repo)}): `dvc push` it from a clone that still has it, or point the DVC remote at "
            f"storage that does ({exc.strerror or exc})"
        ) from None


def _dvc_places(repo: Path) -> str:
    """`cache <dir>, remote <name> <url>` for the message when data is missing (best effort)."""
    try:
        from dvc.repo import Repo

        with Repo(str(repo)) as dvc_repo:
            name = dvc_repo.config["core"].get("remote")
            url = dvc_repo.config["remote"].get(name, {}).get("url") if name else None
            return f"cache {dvc_repo.cache.local.path}, remote {name or '(none configured)'} {url or ''}".strip()
    except Exception as exc:
        return f"DVC configuration unreadable: {exc}"


def step_environment(worktree: Path, cwd: Path, code: CodeSource, commit: str) -> tuple[dict[str, str], str]:
    """The steps' environment, and where their `pipeline_lib` imports from (checked, not assumed)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    if code == "commit":
        if not (worktree / "pipeline_lib" / "__init__.py").is_file() or not (worktree / "flows" / "cli.py").is_file():
            raise ReproduceError(
                f"commit {commit[:12]} holds no pipeline_lib/ and flows/cli.py: this repository does not version "
                "tunepipe's code. Pass --code installed to run the installed tunepipe on the recorded data and config"
            )
        env["PYTHONPATH"] = str(worktree)  # the commit's code, and only it, ahead of the installed package
    probe = subprocess.run([sys.executable, "-c", _PROBE], cwd=cwd, env=env, capture_output=True, text=True)
    if probe.returncode != 0:
        raise ReproduceError(f"the code to run does not import: {probe.stderr.strip()[-1500:]}")
    lib, flows = (Path(p).resolve() for p in json.loads(probe.stdout))
    inside = lib.is_relative_to(worktree.resolve()) and flows.is_relative_to(worktree.resolve())
    if code == "commit" and not inside:
        raise ReproduceError(f"pipeline_lib would import from {lib.parent}, not from the worktree at {worktree}")
    return env, f"{lib.parent} ({'commit ' + commit[:12] if code == 'commit' else 'installed'})"


def _write_config(scratch: Path, info: dict[str, Any]) -> tuple[Path, list[str]]:
    """The recorded config as a file, and the overrides that keep every write inside the scratch directory."""
    config_file = scratch / "config.yaml"
    config_file.write_text(yaml.safe_dump(info["config"], sort_keys=False), encoding="utf-8")
    write_roots = [*info["config"].get("paths", {}).get("write_roots", []), "."]
    sets = [
        "paths.artifacts=.tunepipe-reproduce/artifacts",
        "paths.store=.tunepipe-reproduce/store",
        f"paths.write_roots={json.dumps(write_roots)}",
        "registry.tracking_uri=null",
    ]
    return config_file, sets


def _check_config_hash(
    config_file: Path, sets: list[str], cwd: Path, env: dict[str, str], info: dict[str, Any], label: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _HASH, str(config_file), *sets], cwd=cwd, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise ReproduceError(f"the recorded config of {label} does not load: {done.stderr.strip()[-1500:]}")
    found = done.stdout.strip().splitlines()[-1]
    if info.get("config_hash") and found != info["config_hash"]:
        raise ReproduceError(
            f"the recorded config of {label} hashes to {found}, not to its recorded config.hash {info['config_hash']}"
        )


def _run_steps(
    run: Path,
    config_file: Path,
    sets: list[str],
    cwd: Path,
    env: dict[str, str],
    commit: str,
    progress: Callable[[str], None],
) -> dict[str, dict[str, Any]]:
    results = {}
    options = [arg for item in sets for arg in ("--set", item)]
    for name in STEPS:
        start = time.perf_counter()
        command = [sys.executable, "-m", "flows.cli", "step", name, "--run-dir", str(run), "-c", str(config_file)]
        done = subprocess.run([*command, *options], cwd=cwd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise ReproduceError(
                f"step {name} failed at commit {commit[:12]} (exit {done.returncode}):\n"
                f"{(done.stderr or done.stdout).strip()[-2000:]}"
            )
        out = done.stdout
        results[name] = json.loads(out[0 if out.startswith("{") else out.index("\n{") + 1 :])
        progress(f"[{name}] {time.perf_counter() - start:.1f}s")
    return results


def _compare(
    info: dict[str, Any], results: dict[str, dict[str, Any]], run: Path, tolerance: float | None, label: str
) -> dict[str, Any]:
    from pipeline_lib.data.versions import split_md5
    from pipeline_lib.layout import RunDir

    rundir = RunDir(run)
    environment = _environment(info, results["train"], rundir)
    cpu = all(str(side).startswith("cpu") for side in environment["device"].values())
    if tolerance is None:
        tolerance = 0.0 if cpu else GPU_TOLERANCE
        why = "exact: both runs on CPU" if cpu else f"default {GPU_TOLERANCE} when a GPU is involved"
    else:
        why = "--tolerance"
    rows = _rows(info["metrics"], results["evaluate"]["metrics"], tolerance)
    history = _history(info["run_id"], rundir, tolerance)
    splits = {
        split: {"recorded": digest, "reproduced": found, "same": digest == found}
        for split, found in split_md5(rundir).items()
        if (digest := info["data"]["splits"].get(split)) is not None
    }
    libraries_recorded = bool(info.get("libraries"))
    libraries = {k: list(v) for k, v in differences(info.get("libraries") or {}, library_versions()).items()}
    libraries = libraries if libraries_recorded else {}
    notes = [] if libraries_recorded else [f"{label} recorded no library versions (registered before they were)"]
    if history is None:
        notes.append(f"{label}'s run has no training history (train/history.json) to compare")
    reproduced, reason = judge(rows, history, splits, libraries, environment, libraries_recorded, tolerance)
    return {
        "tolerance": tolerance,
        "tolerance_reason": why,
        "reproduced": reproduced,
        "reason": reason,
        "metrics": rows,
        "history": history,
        "splits": splits,
        "environment": environment,
        "libraries": libraries,
        "libraries_recorded": libraries_recorded,
        "notes": notes,
    }


def judge(
    rows: list[MetricRow],
    history: dict[str, Any] | None,
    splits: dict[str, dict[str, Any]],
    libraries: dict[str, list[str | None]],
    environment: dict[str, dict[str, Any]],
    libraries_recorded: bool,
    tolerance: float,
) -> tuple[bool, str]:
    """Reproduced or not, and why: what differs, and which difference of environment may explain it."""
    problems = [f"split {split} differs from the recorded one" for split, row in splits.items() if not row["same"]]
    off = [row.metric for row in rows if not row.within]
    if off:
        problems.append(f"{len(off)} test metric(s) differ by more than {tolerance:g} ({', '.join(off[:5])})")
    if history is not None and not history["within"]:
        problems.append(
            f"the training history differs by up to {history['max_diff']:.3g}"
            if history["max_diff"] is not None
            else "the training history has other epochs or values than the recorded one"
        )
    if problems:
        return False, "; ".join([*problems, _explain(libraries, environment, libraries_recorded)])
    compared = "every test metric" + (" and training-history value" if history else "")
    return True, f"{compared} within {tolerance:g} of the recorded one"


def _environment(info: dict[str, Any], train: dict[str, Any], run: Any) -> dict[str, dict[str, Any]]:
    """Device, its name and the resolved precision: recorded vs reproduced."""
    summary = json.loads(run.train_summary.read_text()) if run.train_summary.is_file() else {}
    return {
        "device": {"recorded": info.get("device"), "reproduced": train.get("device")},
        "device_name": {
            "recorded": (info.get("capability") or {}).get("device_name"),
            "reproduced": summary.get("capability", {}).get("device_name"),
        },
        "precision": {"recorded": info.get("precision"), "reproduced": train.get("precision")},
    }


def _rows(recorded: dict[str, float], reproduced: dict[str, float], tolerance: float) -> list[MetricRow]:
    rows = []
    for metric in sorted(set(recorded) | set(reproduced)):
        a, b = recorded.get(metric), reproduced.get(metric)
        diff = abs(float(a) - float(b)) if a is not None and b is not None else None
        rows.append(MetricRow(metric, a, b, diff, diff is not None and diff <= tolerance))
    return rows


def _history(run_id: str, run: Any, tolerance: float) -> dict[str, Any] | None:
    """The per-epoch losses and validation metrics (timings left out), recorded vs reproduced: a much finer check
    than the test metrics that the training itself was the same. None when the run logged no history."""
    import mlflow

    try:
        recorded = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/train/history.json"))
    except Exception:
        return None
    reproduced = json.loads(run.train_history.read_text()) if run.train_history.is_file() else []

    def values(rows: list[dict[str, Any]]) -> dict[tuple[Any, str], float]:
        return {
            (row.get("epoch"), key): float(value)
            for row in rows
            for key, value in row.items()
            if key != "epoch" and isinstance(value, int | float) and not key.endswith(("runtime", "per_second"))
        }

    a, b = values(recorded), values(reproduced)
    if set(a) != set(b):
        return {"epochs": len(recorded), "values": len(a), "max_diff": None, "within": False}
    max_diff = max((abs(a[key] - b[key]) for key in a), default=0.0)
    return {"epochs": len(recorded), "values": len(a), "max_diff": max_diff, "within": max_diff <= tolerance}


def _explain(libraries: dict[str, list[str | None]], environment: dict[str, dict[str, Any]], recorded: bool) -> str:
    """Which difference of environment may explain differing figures."""
    causes = [f"{name} {was} -> {now}" for name, (was, now) in libraries.items()]
    causes += [
        f"{what} {sides['recorded']} -> {sides['reproduced']}"
        for what, sides in environment.items()
        if sides["recorded"] != sides["reproduced"]
    ]
    if causes:
        return "this environment differs: " + ", ".join(causes)
    if not recorded:
        return "the library versions of the registration are unknown"
    return "same library versions, device and precision: the difference is not explained by the environment"


def _remove_worktree(repo: Path, worktree: Path, scratch: Path, keep: bool) -> None:
    if keep:
        return
    if worktree.exists():
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=repo, capture_output=True)
    shutil.rmtree(scratch, ignore_errors=True)
    subprocess.run(["git", "worktree", "prune"], cwd=repo, capture_output=True)
