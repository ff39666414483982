"""Step 0, decide: retrain or skip. The data's DVC hash and the config hash are compared with the tags of the
registered champion (and of the last refused challenger): nothing changed, nothing to train."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline_lib.config import PipelineConfig
from pipeline_lib.data.versions import content_md5
from pipeline_lib.registry import store


@dataclass
class RetrainDecision:
    """Whether to retrain, and why: the data's DVC hash and the config hash against registered versions."""

    retrain: bool
    reason: str
    data_md5: str | None
    config_hash: str
    compared_with: dict[str, str] | None = None  # alias → version whose tags were compared

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def retrain_decision(cfg: PipelineConfig, force: bool = False) -> RetrainDecision:
    """Skip when the champion (or the last refused challenger) was trained on this exact data and config.

    The data hash is the content hash DVC records (`md5`, `.dir` for folders), compared with the `data.md5`
    tag; the config hash with `config.hash`. Missing data is not decided here: validate reports it.
    """
    path = Path(cfg.data.path)
    data_md5 = content_md5(path) if path.exists() else None
    config_hash = cfg.config_hash()
    now = f"data {str(data_md5)[:12]}, config {config_hash[:12]}"
    if force:
        return RetrainDecision(True, f"--force: retraining regardless ({now})", data_md5, config_hash)
    if data_md5 is None:
        return RetrainDecision(True, f"{path} is missing: validate will report it", None, config_hash)
    client = store.connect(cfg)
    compared: dict[str, str] = {}
    for alias in (store.CHAMPION, store.CHALLENGER):
        version = store.alias_version(client, cfg.registry.model_name, alias)
        if version is None:
            continue
        compared[alias] = str(version.version)
        tags = version.tags or {}
        if tags.get("data.md5") == data_md5 and tags.get("config.hash") == config_hash:
            verdict = "is the champion" if alias == store.CHAMPION else "was refused as challenger"
            reason = (
                f"nothing changed: {cfg.registry.model_name} v{version.version} {verdict} and was trained on "
                f"the same {now} (use --force to retrain anyway)"
            )
            return RetrainDecision(False, reason, data_md5, config_hash, compared)
    if not compared:
        return RetrainDecision(True, f"no champion yet for {cfg.registry.model_name} ({now})", data_md5, config_hash)
    champion = store.alias_version(client, cfg.registry.model_name, store.CHAMPION)
    changes = _changes(champion.tags if champion is not None else {}, data_md5, config_hash)
    against = f"v{champion.version} (@champion)" if champion is not None else "the registered versions"
    return RetrainDecision(True, f"{changes} since {against}", data_md5, config_hash, compared)


def _changes(tags: dict[str, str], data_md5: str, config_hash: str) -> str:
    changed = []
    if tags.get("data.md5") != data_md5:
        changed.append(f"data changed ({str(tags.get('data.md5'))[:12]} → {data_md5[:12]})")
    if tags.get("config.hash") != config_hash:
        changed.append(f"config changed ({str(tags.get('config.hash'))[:12]} → {config_hash[:12]})")
    return " and ".join(changed) or "a new data or config version"
