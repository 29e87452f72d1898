"""``hybrid calibrate --judge``: a cloud model regrades the items a rule only approximates,
after showing the cost and getting consent; tested against the fake cloud."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from calibration_fakes import KnowingBackend
from fake_cloud import FakeCloud, Fault

from hybrid.cli import main
from hybrid.cli.calibrate_judge import JudgePlan, confirm, open_judge, plan_judge
from hybrid.cli.calibrate_run import CalibrateOptions, calibrate_backend
from hybrid.errors import ConfigError
from hybrid.routing.calibration.item import CalibrationItem, example_answer
from hybrid.routing.calibration.items import calibration_set
from hybrid.routing.calibration.judge import (
    Judge,
    JudgeReport,
    estimate_tokens,
    judge_messages,
    judged_items,
    read_verdict,
)
from hybrid.routing.calibration.record import load_record
from hybrid.routing.calibration.runner import ItemAnswer
from hybrid.routing.names import CloudTarget
from hybrid.settings import Settings, load_settings

ITEMS = calibration_set(0, per_category=6)
RUBRIC_ITEMS = judged_items(ITEMS)


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    with FakeCloud(reply="WRONG") as fake:
        yield fake


def settings_for(cloud: FakeCloud, home: Path, **extra: object) -> Settings:
    cli: dict[str, object] = {
        "cloud.openai.api_key": cloud.openai_key,
        "cloud.openai.base_url": cloud.base_url + "/v1",
        "cloud.max_attempts": 1,
    }
    return load_settings(
        environ={"HYBRID_HOME": str(home)}, dotenv_file=None, cli=cli | extra
    ).settings


def plan_for(cloud: FakeCloud, home: Path) -> JudgePlan:
    return plan_judge("openai/gpt-4.1-mini", settings_for(cloud, home), ITEMS, answer_tokens=24)


def right_answers(items: list[CalibrationItem]) -> list[ItemAnswer]:
    return [ItemAnswer(item.id, (example_answer(item),), True) for item in items]


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("RIGHT", True),
        ("wrong.", False),
        ("Correct", True),
        ("INCORRECT: it names the cake", False),
        ("The answer is right, not wrong", True),
        ("I cannot tell.", None),
        ("", None),
    ],
)
def test_the_first_verdict_named_counts(reply: str, verdict: bool | None) -> None:
    assert read_verdict(reply) is verdict


def test_only_items_with_a_rubric_are_judged_and_summaries_all_have_one() -> None:
    assert RUBRIC_ITEMS
    assert all(item.rubric for item in RUBRIC_ITEMS)
    assert all(item.rubric for item in ITEMS if item.category == "summarising")
    assert not any(item.rubric for item in ITEMS if item.category in ("arithmetic", "coding"))


def test_the_judge_sees_the_task_the_rubric_and_the_first_line_of_the_answer() -> None:
    item = next(i for i in RUBRIC_ITEMS if i.category == "summarising")
    system, user = judge_messages(item, "The pool is closed.\nand more")
    assert "RIGHT or WRONG" in system.content
    assert item.prompt in user.content and str(item.rubric) in user.content
    assert "<answer>\nThe pool is closed.\n</answer>" in user.content


def test_the_estimate_grows_with_the_answers_and_counts_only_judged_items() -> None:
    short_in, short_out = estimate_tokens(ITEMS, answer_tokens=8)
    long_in, long_out = estimate_tokens(ITEMS, answer_tokens=64)
    assert long_in > short_in > 0
    assert short_out == long_out == 8 * len(RUBRIC_ITEMS)
    assert estimate_tokens([i for i in ITEMS if i.rubric is None], answer_tokens=8) == (0, 0)


def regrade(cloud: FakeCloud, home: Path, answers: list[ItemAnswer]) -> JudgeReport:
    async def run() -> JudgeReport:
        async with open_judge(settings_for(cloud, home), plan_for(cloud, home)) as judge:
            assert judge is not None
            return await judge.regrade(ITEMS, answers)

    return asyncio.run(run())


def test_the_judge_overturns_automatic_grades_of_judged_items_only(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    answers = right_answers(ITEMS)
    kept = RUBRIC_ITEMS[0]
    cloud.replies = {f"<answer>\n{example_answer(kept)}\n</answer>": "RIGHT"}

    report = regrade(cloud, tmp_path, answers)

    by_id = {answer.item_id: answer for answer in report.answers}
    assert [a.item_id for a in report.answers] == [i.id for i in ITEMS]
    assert by_id[kept.id].correct
    assert not any(by_id[item.id].correct for item in RUBRIC_ITEMS[1:])
    assert all(by_id[i.id].correct for i in ITEMS if i.rubric is None)
    assert report.judged == len(RUBRIC_ITEMS) and report.unclear == 0
    assert report.overturned == len(RUBRIC_ITEMS) - 1 and report.failure is None
    requests = cloud.requests
    assert len(requests) == len(RUBRIC_ITEMS)
    body: dict[str, Any] = requests[0].body or {}
    assert body["model"] == "gpt-4.1-mini" and body["temperature"] == 0.0


def test_a_reply_without_a_verdict_keeps_the_automatic_grade(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    cloud.reply = "Hmm, hard to say."
    report = regrade(cloud, tmp_path, right_answers(ITEMS))
    assert report.unclear == len(RUBRIC_ITEMS) and report.judged == 0
    assert all(answer.correct for answer in report.answers)
    assert "replies without a verdict" in report.describe("gpt-4.1-mini")


def test_a_failing_provider_stops_judging_and_keeps_the_automatic_grades(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    cloud.push(*[Fault.wrong_key()] * (len(RUBRIC_ITEMS) + 4))
    report = regrade(cloud, tmp_path, right_answers(ITEMS))
    assert report.failure is not None
    assert all(answer.correct for answer in report.answers)
    assert "Judging stopped early" in report.describe("gpt-4.1-mini")


def test_the_plan_prices_the_judge_from_the_price_table(cloud: FakeCloud, tmp_path: Path) -> None:
    plan = plan_for(cloud, tmp_path)
    assert plan.target == CloudTarget("openai", "gpt-4.1-mini")
    assert plan.items == len(RUBRIC_ITEMS)
    assert plan.cost_usd == pytest.approx(
        (plan.input_tokens * 0.4 + plan.output_tokens * 1.6) / 1e6
    )
    assert f"grade {len(RUBRIC_ITEMS)} answers" in plan.describe()
    assert "at most $" in plan.describe()


def test_a_model_without_a_price_says_the_cost_is_unknown(cloud: FakeCloud, tmp_path: Path) -> None:
    settings = settings_for(cloud, tmp_path)
    plan = plan_judge("openai/gpt-unpriced-9", settings, ITEMS, answer_tokens=24)
    assert plan.cost_usd is None
    assert "no price is known for openai/gpt-unpriced-9" in plan.describe()


def lan_settings(box: FakeCloud, home: Path) -> Settings:
    """No cloud key; one LAN server, ``gpu-box``, serving ``big`` at 2 USD a million tokens."""
    server = {
        "name": "gpu-box",
        "base_url": f"{box.base_url}/v1",
        "api_key": box.openai_key,
        "models": ["big"],
    }
    return load_settings(
        environ={"HYBRID_HOME": str(home)},
        dotenv_file=None,
        cli={"lan.servers": [server], "lan.usd_per_1m_tokens": 2.0, "cloud.max_attempts": 1},
    ).settings


def test_a_lan_servers_model_judges_on_that_server_at_the_lan_price(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    settings = lan_settings(cloud, tmp_path)
    plan = plan_judge("gpu-box/big", settings, ITEMS, answer_tokens=24)
    assert (plan.target, plan.lan, plan.items) == (
        CloudTarget("gpu-box", "big"),
        True,
        len(RUBRIC_ITEMS),
    )
    assert plan.cost_usd == pytest.approx(2.0 * (plan.input_tokens + plan.output_tokens) / 1e6)
    assert plan.describe().endswith("at lan.usd_per_1m_tokens.")
    kept = RUBRIC_ITEMS[0]
    cloud.replies = {f"<answer>\n{example_answer(kept)}\n</answer>": "RIGHT"}

    async def run() -> JudgeReport:
        async with open_judge(settings, plan) as judge:
            assert judge is not None
            return await judge.regrade(ITEMS, right_answers(ITEMS))

    report = asyncio.run(run())
    by_id = {answer.item_id: answer for answer in report.answers}
    assert by_id[kept.id].correct
    assert not any(by_id[item.id].correct for item in RUBRIC_ITEMS[1:])
    assert report.judged == len(RUBRIC_ITEMS) and report.failure is None
    assert {(r.body or {}).get("model") for r in cloud.requests} == {"big"}


def test_an_unknown_judge_names_the_lan_servers_too(cloud: FakeCloud, tmp_path: Path) -> None:
    settings = lan_settings(cloud, tmp_path)
    with pytest.raises(ConfigError, match=r"or server/model for a LAN server \(gpu-box\)"):
        plan_judge("gpu-bx/big", settings, ITEMS, answer_tokens=24)


def test_an_unknown_or_keyless_judge_is_refused(cloud: FakeCloud, tmp_path: Path) -> None:
    settings = settings_for(cloud, tmp_path)
    with pytest.raises(ConfigError, match="names no configured cloud model"):
        plan_judge("nowhere/model", settings, ITEMS, answer_tokens=24)
    with pytest.raises(ConfigError, match="has no API key"):
        plan_judge("anthropic/claude-haiku-4-5", settings, ITEMS, answer_tokens=24)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_consent_is_asked_on_a_terminal(cloud: FakeCloud, tmp_path: Path) -> None:
    plan = plan_for(cloud, tmp_path)
    out = io.StringIO()
    assert confirm(plan, assume_yes=False, stdin=Terminal("y\n"), out=out)
    assert plan.describe() in out.getvalue() and "[y/N]" in out.getvalue()
    assert not confirm(plan, assume_yes=False, stdin=Terminal("\n"), out=io.StringIO())
    assert confirm(plan, assume_yes=True, stdin=None, out=io.StringIO())


@pytest.mark.parametrize("stdin", [None, io.StringIO("y\n")])
def test_without_a_terminal_the_judge_needs_yes(
    cloud: FakeCloud, tmp_path: Path, stdin: io.StringIO | None
) -> None:
    with pytest.raises(ConfigError, match="pass --yes"):
        confirm(plan_for(cloud, tmp_path), assume_yes=False, stdin=stdin, out=io.StringIO())


COMMANDS = {"calibrate": "hybrid.cli.calibrate"}


def command_env(monkeypatch: pytest.MonkeyPatch, cloud: FakeCloud, home: Path) -> None:
    monkeypatch.setenv("HYBRID_HOME", str(home))
    monkeypatch.setenv("OPENAI_API_KEY", cloud.openai_key)
    monkeypatch.setenv("OPENAI_BASE_URL", cloud.base_url + "/v1")
    # A model that does not exist: the command must stop before it needs one.
    monkeypatch.setenv("HYBRID_LOCAL__MODEL", str(home / "missing.gguf"))


def test_the_command_refuses_without_a_terminal_before_loading_anything(
    cloud: FakeCloud,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    command_env(monkeypatch, cloud, tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code = main(
        ["calibrate", "--judge", "openai/gpt-4.1-mini", "--per-category", "3"],
        commands=COMMANDS,
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "The judge openai/gpt-4.1-mini will grade" in err and "pass --yes" in err
    assert cloud.requests == []


def test_the_command_stops_when_the_user_declines(
    cloud: FakeCloud,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    command_env(monkeypatch, cloud, tmp_path)
    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    code = main(["calibrate", "--judge", "openai/gpt-4.1-mini"], commands=COMMANDS)
    assert code == 1
    assert "Nothing was run." in capsys.readouterr().err


def test_calibrating_with_a_judge_fits_on_the_judge_s_grades(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    per_category = 20
    items = calibration_set(1, per_category=per_category)
    backend = KnowingBackend(items, lambda i: i.category in ("chat", "facts", "summarising"))
    settings = settings_for(cloud, tmp_path)
    plan = plan_judge("openai/gpt-4.1-mini", settings, items, answer_tokens=8)
    out = io.StringIO()

    async def run() -> None:
        async with open_judge(settings, plan) as judge:
            await calibrate_backend(
                backend,
                home=tmp_path,
                sha256="ab" * 32,
                model_name="m",
                options=CalibrateOptions(per_category=per_category, seed=1, max_tokens=8),
                out=out,
                err=io.StringIO(),
                shipped=tmp_path / "nothing-shipped",
                judge=judge,
            )

    asyncio.run(run())

    record = load_record(tmp_path, "ab" * 32)
    assert record is not None
    correct = {answer.item_id: answer.correct for answer in record.answers}
    assert not any(correct[i.id] for i in items if i.category == "summarising")
    assert all(correct[i.id] for i in items if i.category in ("chat", "facts"))
    judged = len(judged_items(items))
    assert f"Judge gpt-4.1-mini: {judged} items graded, {per_category} automatic" in out.getvalue()


def test_no_plan_opens_no_judge(tmp_path: Path) -> None:
    async def run() -> Judge | None:
        settings = load_settings(environ={"HYBRID_HOME": str(tmp_path)}, dotenv_file=None)
        async with open_judge(settings.settings, None) as judge:
            return judge

    assert asyncio.run(run()) is None
