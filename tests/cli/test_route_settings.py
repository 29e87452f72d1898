"""``hybrid route`` builds its dispatcher as the server does, from the same settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid.cli import main


def test_a_failover_no_provider_serves_is_refused_before_any_model_loads(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HYBRID_HOME", str(isolated / "home"))
    monkeypatch.setenv("HYBRID_PROBE__MEASURE_BANDWIDTH", "false")
    monkeypatch.setenv("HYBRID_CLOUD__FAILOVER", '["nowhere/model-x"]')
    assert main(["route", "What is the capital of France?"]) == 2
    err = capsys.readouterr().err
    assert "cloud.failover names 'nowhere/model-x'" in err
    assert not (isolated / "home" / "models").exists()  # the embedded model was never built
