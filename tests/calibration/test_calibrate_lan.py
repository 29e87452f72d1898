"""``hybrid calibrate --lan SERVER/MODEL``: the calibration set is asked of a LAN server, the fit
is stored under the model's name, and the LAN tier judges that model by it from then on."""

from __future__ import annotations

from pathlib import Path

import pytest
from calibration_fakes import right_answer
from fake_cloud import FakeCloud

from hybrid.cli import main
from hybrid.generation import Message
from hybrid.routing.calibration.items import calibration_set
from hybrid.routing.difficulty.prior import is_prior, prior_for_name
from hybrid.routing.difficulty.store import load_for, name_key
from hybrid.routing.lan import LanTier

COMMANDS = {"calibrate": "hybrid.cli.calibrate"}
MODEL = "team-model"
PER_CATEGORY = 20
SEED = 1


def configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, box: FakeCloud) -> Path:
    home = tmp_path / "home"
    config = tmp_path / "config.toml"
    config.write_text(
        "[[lan.servers]]\n"
        f'name = "box"\nbase_url = "{box.base_url}/v1"\napi_key = "{box.openai_key}"\n'
        f'models = ["{MODEL}"]\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("HYBRID_HOME", str(home))
    monkeypatch.setenv("HYBRID_CONFIG", str(config))
    return home


def test_a_lan_model_is_calibrated_by_name_and_the_lan_tier_uses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    items = calibration_set(SEED, per_category=PER_CATEGORY)
    # The server gets chat and facts right (the last user message names the item), the rest wrong.
    knows = {
        presentation[-1].content: right_answer(item, index)
        for item in items
        if item.category in ("chat", "facts")
        for index, presentation in enumerate(item.presentations)
    }
    with FakeCloud(reply="I do not know.", models=(MODEL,)) as box:
        box.replies = knows
        home = configure(tmp_path, monkeypatch, box)
        code = main(
            [
                "calibrate",
                "--lan",
                f"box/{MODEL}",
                "--per-category",
                str(PER_CATEGORY),
                "--seed",
                str(SEED),
                "--max-tokens",
                "8",
            ],
            commands=COMMANDS,
        )
        asked = {r.body["model"] for r in box.requests if r.body is not None}
    assert code == 0, capsys.readouterr().err
    assert asked == {MODEL}
    stored = load_for(home, name_key(MODEL), shipped=tmp_path / "nothing-shipped")
    assert stored is not None and stored.meta["model"] == f"box/{MODEL}"
    assert not is_prior(stored)
    tier = LanTier(pool=None, home=home)  # type: ignore[arg-type]
    messages = (Message("user", "Convert 12 miles to kilometres."),)
    able, score = tier.able(MODEL, messages)
    # Judged by the fit, not by the prior a name without a size would get.
    assert score == stored.score(messages) != prior_for_name(MODEL).score(messages)
    assert able is (score <= stored.threshold)


def test_an_unknown_lan_server_is_refused_before_anything_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeCloud(models=(MODEL,)) as box:
        configure(tmp_path, monkeypatch, box)
        code = main(["calibrate", "--lan", f"nowhere/{MODEL}"], commands=COMMANDS)
        assert box.requests == []
    assert code == 2
    assert "--lan names server 'nowhere', which is not under [[lan.servers]] (box)" in (
        capsys.readouterr().err
    )
