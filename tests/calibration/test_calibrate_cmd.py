"""``hybrid calibrate``: answers, fits, stores per model hash, and says how it went; refuses
a fit it cannot trust, keeping the calibration in use; ``--reset`` goes back to the shipped one."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
from calibration_fakes import FunctionBackend, KnowingBackend
from gguf_writer import tiny_model

from hybrid.backend import Backend
from hybrid.cli import main
from hybrid.cli.calibrate import reset_calibration
from hybrid.cli.calibrate_report import ProgressBar
from hybrid.cli.calibrate_run import CalibrateOptions, DeferredBackend, calibrate_backend
from hybrid.errors import CalibrationRejectedError, HybridError
from hybrid.routing.calibration.fitting import prompt_length
from hybrid.routing.calibration.item import CalibrationItem
from hybrid.routing.calibration.items import CATEGORIES, calibration_set
from hybrid.routing.calibration.record import load_record, record_path
from hybrid.routing.difficulty.features import FEATURE_VERSION, N_FEATURES
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.store import find, load_for, model_path, save

SHA = "5a" * 32
COMMANDS = {"calibrate": "hybrid.cli.calibrate"}
ENOUGH = 20
"""Items per category that hold out 90, enough to be saved when 12 or more are right."""


def greeter(prompt: str) -> str | HybridError:
    """A local model that can only say hello."""
    return "Hello!"


def knows_chat_and_facts(per_category: int, seed: int) -> KnowingBackend:
    """A local model that gets chat and facts right and everything else wrong."""
    items = calibration_set(seed, per_category=per_category)
    return KnowingBackend(items, lambda item: item.category in ("chat", "facts"))


def stored_model(threshold: float, **meta: object) -> DifficultyModel:
    return DifficultyModel(
        weights=np.zeros(N_FEATURES),
        bias=0.0,
        threshold=threshold,
        feature_version=FEATURE_VERSION,
        mean=np.zeros(N_FEATURES),
        scale=np.ones(N_FEATURES),
        meta=meta,
    )


SHIPPED_META = {"created": "2026-11-27", "items": 540, "held_out_auroc": 0.7593}
SHIPPED_PHRASE = "the shipped calibration (made 2026-11-27, 540 items, held-out AUROC 0.759)"


def ship(folder: Path, sha: str = SHA) -> Path:
    """A package folder that ships a calibration for ``sha``."""
    folder.mkdir(parents=True, exist_ok=True)
    model = stored_model(0.52, **SHIPPED_META)
    (folder / f"{sha}.json").write_text(json.dumps(model.to_json()))
    return folder


def run_calibration(
    backend: Backend, home: Path, options: CalibrateOptions, **kwargs: object
) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    asyncio.run(
        calibrate_backend(
            backend,
            home=home,
            sha256=SHA,
            model_name="tiny-model",
            options=options,
            out=out,
            err=err,
            **kwargs,  # type: ignore[arg-type]
        )
    )
    return out.getvalue(), err.getvalue()


class CountingBackend(KnowingBackend):
    """A :class:`KnowingBackend` that counts the answers it was asked for."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.asked = 0

    async def start(self, request):  # type: ignore[no-untyped-def]
        self.asked += 1
        return await super().start(request)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.5
        return self.now


def test_calibrating_stores_the_model_and_answers_under_the_hash(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    options = CalibrateOptions(per_category=ENOUGH, seed=1, max_tokens=8)
    calibration = asyncio.run(
        calibrate_backend(
            knows_chat_and_facts(ENOUGH, seed=1),
            home=tmp_path,
            sha256=SHA,
            model_name="tiny-model",
            options=options,
            out=out,
            err=err,
            clock=FakeClock(),
        )
    )
    stored = load_for(tmp_path, SHA, shipped=tmp_path / "nothing-shipped")
    assert stored is not None
    assert stored.threshold == calibration.model.threshold
    assert stored.meta["model_sha256"] == SHA and stored.meta["model"] == "tiny-model"
    assert stored.meta["items"] == ENOUGH * len(CATEGORIES) and stored.meta["seed"] == 1
    record = load_record(tmp_path, SHA)
    assert record is not None and len(record.answers) == ENOUGH * len(CATEGORIES)
    assert sum(answer.correct for answer in record.answers) == 2 * ENOUGH

    summary = out.getvalue()
    assert "tiny-model" in summary and f"{ENOUGH * len(CATEGORIES)} items" in summary
    assert "chat" in summary and "Held-out AUROC" in summary
    assert "prompt length alone" in summary
    assert str(model_path(tmp_path, SHA)) in summary
    # Not a terminal: one progress line per 10 %, the last at 100 %.
    *progress, last = err.getvalue().splitlines()
    assert last == "fitting the difficulty model ..."
    assert progress[-1].startswith("answering [") and "100%" in progress[-1]
    assert 2 <= len(progress) <= 11


def test_the_same_seed_gives_the_same_stored_model(tmp_path: Path) -> None:
    def calibrate_into(home: Path) -> dict[str, object]:
        options = CalibrateOptions(per_category=ENOUGH, seed=5, max_tokens=8)
        run_calibration(knows_chat_and_facts(ENOUGH, seed=5), home, options)
        data: dict[str, object] = json.loads(model_path(home, SHA).read_text())
        return data

    first, second = calibrate_into(tmp_path / "a"), calibrate_into(tmp_path / "b")
    assert first["weights"] == second["weights"]
    assert first["threshold"] == second["threshold"]


def test_too_small_a_sample_is_refused_and_your_calibration_is_kept(tmp_path: Path) -> None:
    mine = save(tmp_path, SHA, stored_model(0.61, created="2026-12-01", items=540))
    before = mine.read_bytes()
    options = CalibrateOptions(per_category=5, seed=0, max_tokens=8)

    with pytest.raises(CalibrationRejectedError) as refused:
        run_calibration(knows_chat_and_facts(5, seed=0), tmp_path, options)

    message = str(refused.value)
    assert message.startswith("calibration not saved: 30 items were held out")
    assert "4 answered right and 26 wrong: too few to trust" in message
    assert "at least 50 are held out, with at least 10 answered right and 10 wrong" in message
    assert f"The router keeps using your calibration {mine} (made 2026-12-01, 540 items)" in (
        message
    )
    assert message.endswith("Run `hybrid calibrate` again with --per-category 20 or more.")
    assert mine.read_bytes() == before
    # The answers are kept: the larger run the error asks for reuses them.
    record = load_record(tmp_path, SHA)
    assert record is not None and len(record.answers) == 5 * len(CATEGORIES)
    bigger = CountingBackend(calibration_set(0, per_category=6), lambda item: False)
    err = io.StringIO()
    with pytest.raises(CalibrationRejectedError):
        asyncio.run(
            calibrate_backend(
                bigger,
                home=tmp_path,
                sha256=SHA,
                model_name="tiny-model",
                options=CalibrateOptions(per_category=6, max_tokens=8),
                out=io.StringIO(),
                err=err,
            )
        )
    assert bigger.asked < 6 * len(CATEGORIES) * 2
    assert f"reusing {5 * len(CATEGORIES)} of {6 * len(CATEGORIES)} answers" in err.getvalue()


def test_a_refused_fit_names_the_shipped_calibration_that_stays_in_use(tmp_path: Path) -> None:
    options = CalibrateOptions(per_category=4, seed=1, max_tokens=8)

    with pytest.raises(CalibrationRejectedError) as refused:
        run_calibration(FunctionBackend(greeter), tmp_path, options, shipped=ship(tmp_path / "pkg"))

    assert f"The router keeps using {SHIPPED_PHRASE}." in str(refused.value)
    assert not model_path(tmp_path, SHA).exists()


def test_a_fit_worse_than_prompt_length_is_refused(tmp_path: Path) -> None:
    items = calibration_set(0, per_category=ENOUGH)
    # The shortest 30 % are right: a cut the features cannot reproduce exactly.
    cut = sorted(prompt_length(item) for item in items)[len(items) * 3 // 10]

    def short_prompts(item: CalibrationItem) -> bool:
        return prompt_length(item) < cut

    out = io.StringIO()
    with pytest.raises(CalibrationRejectedError) as refused:
        asyncio.run(
            calibrate_backend(
                KnowingBackend(items, short_prompts),
                home=tmp_path,
                sha256=SHA,
                model_name="m",
                options=CalibrateOptions(per_category=ENOUGH, seed=0, max_tokens=8),
                out=out,
                err=io.StringIO(),
                shipped=tmp_path / "nothing-shipped",
            )
        )

    message = str(refused.value)
    assert "ranks the 90 held-out prompts worse than their length does" in message
    assert "against 1.000 for escalating the longest prompts first" in message
    assert "this model still has no calibration" in message
    assert "--per-category 60 or more" in message
    assert "prompt length alone: 1.000" in out.getvalue() and "Not saved." in out.getvalue()
    assert not model_path(tmp_path, SHA).exists()


def test_reset_removes_your_calibration_and_the_shipped_one_is_used_again(
    tmp_path: Path,
) -> None:
    shipped = ship(tmp_path / "pkg")
    mine = save(tmp_path / "home", SHA, stored_model(0.0))
    out = io.StringIO()

    assert reset_calibration(tmp_path / "home", SHA, model_name="m", out=out, shipped=shipped) == 0

    assert not mine.exists()
    found = find(tmp_path / "home", SHA, shipped=shipped)
    assert found is not None and found.source == "shipped" and found.model.threshold == 0.52
    text = out.getvalue()
    assert f"Removed your calibration of m ({mine})." in text
    assert f"The router uses {SHIPPED_PHRASE}." in text


def test_reset_without_a_calibration_of_yours_says_what_is_in_use(tmp_path: Path) -> None:
    out = io.StringIO()

    code = reset_calibration(tmp_path, SHA, model_name="m", out=out, shipped=ship(tmp_path / "p"))

    assert code == 0
    assert out.getvalue().startswith("You have no calibration of m to remove")
    assert f"The router uses {SHIPPED_PHRASE}." in out.getvalue()


def test_hybrid_calibrate_reset_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hybrid.routing.difficulty.store import gguf_sha256

    model = tiny_model().write(tmp_path / "models" / "mine.gguf")
    home = tmp_path / "home"
    monkeypatch.setenv("HYBRID_HOME", str(home))
    monkeypatch.setenv("HYBRID_LOCAL__MODEL", str(model))
    mine = save(home, gguf_sha256(model), stored_model(0.0))

    assert main(["calibrate", "--reset"], commands=COMMANDS) == 0

    assert not mine.exists()
    out = capsys.readouterr().out
    assert f"Removed your calibration of mine ({mine})." in out
    assert "No calibration is shipped for this model" in out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--per-category", "0"], "--per-category must be at least 1"),
        (["--max-tokens", "0"], "--max-tokens must be at least 1"),
        (["--held-out", "1.5"], "--held-out must be between 0 and 1"),
    ],
)
def test_bad_flags_are_refused_before_any_model_is_touched(
    flags: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HYBRID_HOME", str(tmp_path / "home"))
    assert main(["calibrate", *flags], commands=COMMANDS) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "home" / "models").exists()


def test_a_missing_model_file_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HYBRID_HOME", str(tmp_path / "home"))
    code = main(["calibrate", "--model", str(tmp_path / "absent.gguf")], commands=COMMANDS)
    assert code == 1
    assert "absent.gguf" in capsys.readouterr().err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_progress_bar_redraws_one_line() -> None:
    stream = Terminal()
    bar = ProgressBar(stream, "answering", clock=FakeClock())
    for done in range(1, 5):
        bar(done, 4)
    bar.finish()
    text = stream.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n") and text.count("\n") == 1
    assert "4/4 100%" in text


@pytest.mark.slow
def test_calibrate_runs_the_real_model_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HYBRID_HOME", str(home))
    # Two items per category hold out 15: the real model answers them, and the fit is refused.
    assert main(["calibrate", "--per-category", "2"], commands=COMMANDS) == 1
    # No fit is saved; the answers are, for the next run to reuse.
    kept = [path.name for path in (home / "calibration").iterdir()]
    assert len(kept) == 1 and kept[0].endswith(".answers.json")
    captured = capsys.readouterr()
    assert "Calibrated gemma-3-270m-q4_k_m" in captured.out and "Held-out AUROC" in captured.out
    assert "Not saved." in captured.out
    assert "hybrid: error: calibration not saved: 15 items were held out" in captured.err
    assert "The router keeps using the shipped calibration (made " in captured.err
    assert "--per-category" in captured.err


def test_a_second_run_reuses_the_recorded_answers_unless_told_to_rerun(tmp_path: Path) -> None:
    items = calibration_set(1, per_category=ENOUGH)
    knows = lambda item: item.category in ("chat", "facts")  # noqa: E731
    options = CalibrateOptions(per_category=ENOUGH, seed=1, max_tokens=8)
    first = CountingBackend(items, knows)
    run_calibration(first, tmp_path, options)
    stored = model_path(tmp_path, SHA).read_bytes()
    assert first.asked >= len(items)

    again = CountingBackend(items, knows)
    out, err = run_calibration(again, tmp_path, options)
    assert again.asked == 0
    assert f"{len(items)} answers reused from an earlier run." in out
    assert f"reusing {len(items)} of {len(items)} answers" in err and "--rerun" in err
    assert model_path(tmp_path, SHA).read_bytes() == stored

    # The model is not even loaded when every answer is reused; it is when one is missing.
    opened: list[CountingBackend] = []

    async def load() -> Backend:
        opened.append(CountingBackend(items, knows))
        return opened[-1]

    embeds = callable(getattr(first, "prompt_embedding", None))
    run_calibration(DeferredBackend(load, embeds=embeds), tmp_path, options)
    assert opened == []
    rerun_all = CalibrateOptions(per_category=ENOUGH, seed=1, max_tokens=8, rerun=True)
    run_calibration(DeferredBackend(load, embeds=embeds), tmp_path, rerun_all)
    assert len(opened) == 1 and opened[0].asked == first.asked

    # Another output cap is another run: nothing of the record is reused.
    capped = CountingBackend(items, knows)
    run_calibration(capped, tmp_path, CalibrateOptions(per_category=ENOUGH, seed=1, max_tokens=9))
    assert capped.asked == first.asked

    rerun = CountingBackend(items, knows)
    options = CalibrateOptions(per_category=ENOUGH, seed=1, max_tokens=9, rerun=True)
    _, err = run_calibration(rerun, tmp_path, options)
    assert rerun.asked == first.asked and "reusing" not in err


def test_a_record_of_fewer_items_is_reused_for_those_and_the_rest_are_asked(
    tmp_path: Path,
) -> None:
    small = CalibrateOptions(per_category=ENOUGH, seed=1, max_tokens=8)
    run_calibration(knows_chat_and_facts(ENOUGH, seed=1), tmp_path, small)
    more = calibration_set(1, per_category=ENOUGH + 5)
    backend = CountingBackend(more, lambda item: item.category in ("chat", "facts"))
    bigger = CalibrateOptions(per_category=ENOUGH + 5, seed=1, max_tokens=8)
    _, err = run_calibration(backend, tmp_path, bigger)
    # Ids are per category: the first ENOUGH of each are the same items as before.
    assert f"reusing {ENOUGH * len(CATEGORIES)} of {len(more)} answers" in err
    assert 0 < backend.asked < len(more) * 2
    record = load_record(tmp_path, SHA)
    assert record is not None and len(record.answers) == len(more)
    assert sum(answer.correct for answer in record.answers) == 2 * (ENOUGH + 5)


class InterruptedBackend(CountingBackend):
    """Answers ``limit`` presentations, then the user presses Ctrl-C."""

    def __init__(self, items: list[CalibrationItem], limit: int) -> None:
        super().__init__(items, lambda item: item.category in ("chat", "facts"))
        self.limit = limit

    async def start(self, request):  # type: ignore[no-untyped-def]
        if self.asked >= self.limit:
            raise KeyboardInterrupt
        return await super().start(request)


def test_answers_given_before_ctrl_c_are_kept_and_reused_but_not_as_a_whole_set(
    tmp_path: Path,
) -> None:
    items = calibration_set(1, per_category=ENOUGH)
    options = CalibrateOptions(per_category=ENOUGH, seed=1, max_tokens=8)
    with pytest.raises(KeyboardInterrupt):
        run_calibration(InterruptedBackend(items, 40), tmp_path, options)
    record = load_record(tmp_path, SHA)
    assert record is not None and 0 < len(record.answers) < len(items)
    assert record.answers_for(items) is None, "a partial record is not a complete set"

    rest = CountingBackend(items, lambda item: item.category in ("chat", "facts"))
    _, err = run_calibration(rest, tmp_path, options)
    assert f"reusing {len(record.answers)} of {len(items)} answers" in err
    complete = load_record(tmp_path, SHA)
    assert complete is not None and complete.answers_for(items) is not None


def test_ctrl_c_keeps_an_earlier_larger_record_whole(tmp_path: Path) -> None:
    run_calibration(
        knows_chat_and_facts(ENOUGH, seed=1),
        tmp_path,
        CalibrateOptions(per_category=ENOUGH, seed=1, max_tokens=8),
    )
    items = calibration_set(1, per_category=ENOUGH)
    more = calibration_set(1, per_category=ENOUGH + 5)
    with pytest.raises(KeyboardInterrupt):
        run_calibration(
            InterruptedBackend(more, 3),
            tmp_path,
            CalibrateOptions(per_category=ENOUGH + 5, seed=1, max_tokens=8),
        )
    record = load_record(tmp_path, SHA)
    assert record is not None and record.per_category == ENOUGH
    assert record.answers_for(items) is not None and record.answers_for(more) is None
    assert len(record.answers) > len(items)


class InterruptedJudge:
    """A judge that overturns the first rubric item's grade, then the user presses Ctrl-C."""

    model = "fake-judge"

    async def regrade(self, items, answers, *, progress=None, on_verdict=None):  # type: ignore[no-untyped-def]
        index = next(i for i, item in enumerate(items) if item.rubric is not None)
        on_verdict(index, dataclasses.replace(answers[index], correct=not answers[index].correct))
        raise KeyboardInterrupt


def test_a_judge_s_grades_given_before_ctrl_c_are_kept(tmp_path: Path) -> None:
    items = calibration_set(1, per_category=ENOUGH)
    options = CalibrateOptions(per_category=ENOUGH, seed=1, max_tokens=8)
    judged = next(item for item in items if item.rubric is not None)
    with pytest.raises(KeyboardInterrupt):
        run_calibration(
            knows_chat_and_facts(ENOUGH, seed=1), tmp_path, options, judge=InterruptedJudge()
        )
    record = load_record(tmp_path, SHA)
    assert record is not None
    answers = record.answers_for(items)
    assert answers is not None
    automatic = judged.category in ("chat", "facts")
    assert next(a for a in answers if a.item_id == judged.id).correct is not automatic


def test_reused_answers_are_graded_again_except_those_to_items_with_a_rubric(
    tmp_path: Path,
) -> None:
    options = CalibrateOptions(per_category=ENOUGH, seed=1, max_tokens=8)
    items = calibration_set(1, per_category=ENOUGH)
    run_calibration(knows_chat_and_facts(ENOUGH, seed=1), tmp_path, options)
    record = load_record(tmp_path, SHA)
    assert record is not None
    graded = {answer.item_id: answer.correct for answer in record.answers}
    automatic = next(item for item in items if item.rubric is None)
    rubric = next(item for item in items if item.rubric is not None)
    # A record made by graders that erred on both (or, for the rubric, a judge that disagreed).
    data = json.loads(record_path(tmp_path, SHA).read_text())
    for row in data["answers"]:
        if row["id"] in (automatic.id, rubric.id):
            row["correct"] = not row["correct"]
    record_path(tmp_path, SHA).write_text(json.dumps(data))

    backend = CountingBackend(items, lambda item: item.category in ("chat", "facts"))
    run_calibration(backend, tmp_path, options)
    assert backend.asked == 0
    again = load_record(tmp_path, SHA)
    assert again is not None
    regraded = {answer.item_id: answer.correct for answer in again.answers}
    assert regraded[automatic.id] == graded[automatic.id]  # graded again: the error is gone
    assert regraded[rubric.id] == (not graded[rubric.id])  # its recorded grade stands
