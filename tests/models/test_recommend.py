"""``hybrid recommend``: the shipped list is well formed, and the ranking follows the machine."""

from __future__ import annotations

import io
import json

import pytest
from hardware_fakes import GIB, build_snapshot

from hybrid.cli import main
from hybrid.cli.recommend import recommend
from hybrid.errors import ConfigError
from hybrid.hardware.snapshot import HardwareSnapshot
from hybrid.models.pull_spec import parse_request
from hybrid.models.recommend import load_recommended, rank
from hybrid.models.stores.files import quant_tag
from hybrid.settings import Settings


class FixedProbe:
    def __init__(self, snapshot: HardwareSnapshot) -> None:
        self._snapshot = snapshot

    def snapshot(self, *, measure_bandwidth: bool = True) -> HardwareSnapshot:
        return self._snapshot


def test_the_shipped_list_names_pullable_instruct_ggufs() -> None:
    models = load_recommended()

    assert 5 <= len(models) <= 10
    assert len({m.id for m in models}) == len(models)
    for model in models:
        request = parse_request(model.pull_command.removeprefix("hybrid pull "))
        assert request.repo == model.repo and request.quant == model.quant
        assert quant_tag(model.file).upper() == model.quant.upper()
        assert model.size_bytes > 0 and model.context > 0 and model.licence
        assert all(q.source for q in model.quality)  # every figure names its source


def test_a_roomy_fast_machine_ranks_the_largest_model_first() -> None:
    models = load_recommended()
    snapshot = build_snapshot(total=64 * GIB, available=48 * GIB, bandwidth=400e9)

    ranked = rank(models, snapshot, Settings().local)

    assert ranked[0].model.size_bytes == max(m.size_bytes for m in models)
    assert ranked[0].why.startswith("the largest that fits")
    assert all(r.plan is not None and r.plan.fits for r in ranked)


def test_a_small_machine_puts_what_does_not_fit_last_and_says_so() -> None:
    models = load_recommended()
    snapshot = build_snapshot(total=4 * GIB, available=2 * GIB, bandwidth=20e9)

    ranked = rank(models, snapshot, Settings().local)

    fits = [r.plan is not None and r.plan.fits for r in ranked]
    assert fits == sorted(fits, reverse=True)  # every fitting model before any other
    assert not fits[-1] and ranked[-1].why.startswith("does not fit")
    assert ranked[0].model.size_bytes < ranked[-1].model.size_bytes


def test_a_slow_machine_prefers_a_model_that_keeps_up_with_reading() -> None:
    models = load_recommended()
    snapshot = build_snapshot(total=64 * GIB, available=48 * GIB, bandwidth=20e9)

    ranked = rank(models, snapshot, Settings().local)

    assert ranked[0].plan is not None and ranked[0].plan.predicted_tokens_per_s is not None
    assert ranked[0].plan.predicted_tokens_per_s >= 10
    slow = [r for r in ranked if "slower than reading speed" in r.why]
    assert slow and all(r.model.size_bytes > ranked[0].model.size_bytes for r in slow)


def test_json_output_carries_the_verdict_and_the_pull_command() -> None:
    out = io.StringIO()
    probe = FixedProbe(build_snapshot(total=16 * GIB, available=12 * GIB))

    assert recommend(Settings(), probe, as_json=True, out=out) == 0

    rows = json.loads(out.getvalue())["models"]
    assert {"repo", "file", "size_bytes", "licence", "quality", "fits", "why", "pull"} <= set(
        rows[0]
    )
    assert all(row["pull"].startswith("hybrid pull ") for row in rows)


def test_text_output_has_a_why_and_a_pull_line_per_model() -> None:
    out = io.StringIO()
    recommend(Settings(), FixedProbe(build_snapshot()), as_json=False, out=out)

    text = out.getvalue()
    for model in load_recommended():
        assert model.pull_command in text


def test_a_malformed_list_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="malformed"):
        load_recommended('{"models": [{"id": "x"}]}')


def test_the_command_is_registered(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", "--help"]) == 0
    assert "--json" in capsys.readouterr().out
