"""``POST /v1/hybrid/feedback`` on a ledger other daemons write to as well (``ledger.url``).

The ledger is seeded as two daemons sharing it would leave it, before the app starts; the app
keeps every record (``ledger.retention_days = 0``), so no record's age depends on the clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from fastapi.testclient import TestClient
from labelled_traffic import SHA, T0, answered
from scripted import ScriptedBackend, scripted_app

from hybrid.ledger.learning import Signal
from hybrid.ledger.record import LedgerRecord, VerdictRecord
from hybrid.ledger.store import LedgerStore
from hybrid.routing.difficulty.features import FEATURE_VERSION, N_FEATURES
from hybrid.settings import Settings


def scored(request_id: str, instance: str) -> LedgerRecord:
    """A local answer the difficulty policy scored, by the daemon ``instance``."""
    verdict = VerdictRecord("difficulty", "local", "difficulty:0.30<=0.60", 0.3)
    return dataclasses.replace(
        answered(request_id, "local"), verdicts=(verdict,), instance=instance
    )


def signal(request_id: str) -> Signal:
    return Signal.of(
        request_id=request_id,
        time=T0,
        model_sha256=SHA,
        feature_version=FEATURE_VERSION,
        features=np.zeros(N_FEATURES),
        route="local",
        score=0.3,
        prompt_chars=9,
    )


def test_feedback_on_a_signal_another_daemon_pruned_blames_no_setting_of_this_one(
    settings_for: Callable[..., Settings], backend: ScriptedBackend
) -> None:
    settings = settings_for(
        **{"probe.measure_bandwidth": False, "ledger.retention_days": 0, "ledger.instance": "a"}
    )
    assert settings.routing.learn.keep_signals == 10_000
    store = LedgerStore.open(settings.ledger.resolved_path(settings.home))
    try:
        # This daemon answered the request and kept its signal; another one sharing the ledger
        # keeps a single signal, and pruned it as it wrote its own.
        store.append([scored("ours", "a")], [signal("ours")], keep_signals=10_000)
        store.append([scored("theirs", "b")], [signal("theirs")], keep_signals=1)
        assert [kept.request_id for kept in store.signals()] == ["theirs"]
    finally:
        store.close()
    with TestClient(scripted_app(settings, backend)) as client:
        response = client.post("/v1/hybrid/feedback", json={"request_id": "ours", "good": False})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["route"], body["about_local"], body["usable"]) == ("local", True, False)
    message = body["message"]
    assert "no longer kept" in message and "the label is kept" in message
    # This daemon's 10,000 did not prune it: the message does not say it did, and says what
    # can: the newest keep_signals of the whole ledger, and its records' retention.
    assert "10,000" not in message
    assert "every daemon" in message and "ledger.retention_days" in message
    assert "raise routing.learn.keep_signals" in message
