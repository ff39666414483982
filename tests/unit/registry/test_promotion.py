"""The alias move is checked against the champion the gates compared with, and refused when it changed under
the run (a real local MLflow store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_lib.registry import ledger, promotion, store
from pipeline_lib.registry.registration import decide_alias
from tests.unit.stores import store_with_versions

NAME = "champion-check"


@pytest.fixture
def two_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """v1 and v2 registered, v1 promoted (ledgered) while v2's run was still being gated against no champion."""
    cfg, client, runs = store_with_versions(tmp_path, monkeypatch, NAME, 2)
    promotion.move_champion(client, NAME, "1", expected=None, action="promote", reason="first", run_id=runs[0])
    return cfg, client


def _champion(client) -> str:
    return str(store.alias_version(client, NAME, store.CHAMPION).version)


def test_a_move_expecting_another_champion_is_refused_and_changes_nothing(two_versions):
    _, client = two_versions
    ledger_before = ledger.read(client, NAME)

    with pytest.raises(promotion.PromotionError, match="changed from no champion to v1 meanwhile; nothing was moved"):
        promotion.move_champion(client, NAME, "2", expected=None, action="promote", reason="gated against none")

    assert _champion(client) == "1"
    assert ledger.read(client, NAME) == ledger_before
    assert [r["version"] for r in ledger_before] == ["1"]


def test_a_move_expecting_the_current_champion_goes_ahead_and_is_ledgered(two_versions):
    _, client = two_versions

    promotion.move_champion(client, NAME, "2", expected="1", action="promote", reason="beats v1")

    assert _champion(client) == "2"
    last = ledger.read(client, NAME)[-1]
    assert (last["version"], last["previous_champion"], last["action"]) == ("2", "1", "promote")


def test_a_run_gated_against_an_older_champion_is_not_promoted(two_versions):
    cfg, client = two_versions

    stale = decide_alias(client, cfg, {"passed": True, "champion": None})
    fresh = decide_alias(client, cfg, {"passed": True, "champion": {"version": "1"}})

    assert stale[:2] == (False, "champion changed from no champion to v1 while this run was gated")
    assert fresh[:2] == (True, "every gate passed")
    assert str(stale[2].version) == str(fresh[2].version) == "1"
