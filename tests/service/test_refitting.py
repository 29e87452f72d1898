"""Refitting from labelled traffic while serving: the real ledger writer, the real refit.

The labelled requests (wrong when they mention a zebra, which the model in use never learned)
are replayed through the ledger's writer as the server writes them; the refitter reads them
through the writer's read connection, refits, saves and reloads the served model's difficulty
model, so that the router scores new traffic with it at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gguf_writer import tiny_model
from labelled_traffic import (
    T0,
    carried_probe,
    features,
    hidden_traffic,
    kinds,
    model_in_use,
    ranked_beside,
    replay,
    traffic,
)

from hybrid.ledger.learning import Label
from hybrid.ledger.writer import LedgerWriter
from hybrid.routing.calibration import learning
from hybrid.routing.calibration.metrics import auroc
from hybrid.routing.difficulty.labelled import LabelledScores, learned_scores
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.store import find, gguf_sha256, save
from hybrid.routing.policies.difficulty import CalibratedModel
from hybrid.service.refitting import RefitOutcome, TrafficRefitter

T = 1_796_000_000.0


def ranks(model: DifficultyModel | None, labelled: list[tuple[str, bool]]) -> float:
    X = np.stack([features(text) for text, _ in labelled])
    wrong = np.array([w for _, w in labelled], dtype=np.float64)
    assert model is not None
    return auroc(model.scores(X), wrong)


def served(tmp_path: Path) -> tuple[Path, str, CalibratedModel]:
    """A served GGUF file with a calibration fitted to numbers, and its difficulty model."""
    gguf = tiny_model().write(tmp_path / "models" / "mine.gguf")
    sha = gguf_sha256(gguf)
    home = tmp_path / "home"
    model = model_in_use()
    save(home, sha, dataclasses.replace(model, meta={**model.meta, "model_sha256": sha}))
    calibration = CalibratedModel(home, lambda: gguf)
    calibration.look_up_now()
    return home, sha, calibration


@contextmanager
def reading(ledger: Path) -> Iterator[LedgerWriter]:
    """The ledger's writer, started, as the server holds it (its read connection)."""
    writer = LedgerWriter(ledger, retention_days=0, keep_signals=10_000)
    writer.start()
    try:
        yield writer
    finally:
        writer.close()


def refitter_for(
    home: Path, writer: LedgerWriter, calibration: CalibratedModel, **options: Any
) -> TrafficRefitter:
    return TrafficRefitter(
        home=home, ledger=writer, calibration=calibration, model_name=lambda: "mine", **options
    )


def test_enough_new_labels_refit_save_and_reload_the_served_models_router(
    tmp_path: Path,
) -> None:
    home, sha, calibration = served(tmp_path)
    ledger = tmp_path / "ledger.sqlite3"
    replay(ledger, traffic(2, 420, "zebra"), sha=sha)
    fresh = traffic(3, 300, "zebra")
    assert ranks(calibration(), fresh) < 0.65

    async def scenario() -> tuple[RefitOutcome | None, RefitOutcome | None, int]:
        with reading(ledger) as writer:
            refitter = refitter_for(home, writer, calibration, refit_after=100, clock=lambda: T)
            first = await refitter.check()
            again = await refitter.check()  # no new labels since: nothing to do
            restarted = refitter_for(home, writer, calibration, refit_after=100)
            # A restarted server knows the refit in use learned from these labels already.
            assert await restarted.check() is None and restarted.labels == 373
            return first, again, refitter.labels

    outcome, again, labels = asyncio.run(scenario())
    # 420 labelled requests, 47 of them people's labels of cloud answers (not usable).
    assert labels == 373 and again is None
    assert outcome is not None and outcome.adopted and outcome.labels == 373
    assert outcome.time == "2026-11-30T00:53:20+00:00"
    assert "373 labelled requests; saved to" in outcome.message
    assert outcome.to_json()["model_stage"] is None  # the model in use has no model stage
    # The router uses the refit from now on, and it ranks new traffic of the kind better.
    after = calibration()
    assert after is not None and after.meta["refitted_by"] == "traffic"
    assert ranks(after, fresh) > 0.9
    stored = find(home, sha)
    assert stored is not None and stored.model.meta["refitted_by"] == "traffic"
    # hybrid models and the command's messages say what it learned from.
    assert "refitted on 373 labelled requests" in stored.describe()


def test_a_refit_while_serving_refits_the_model_stage_from_the_kept_vectors(
    tmp_path: Path,
) -> None:
    home, sha, calibration = served(tmp_path)
    save(home, sha, dataclasses.replace(model_in_use(), probe=carried_probe(8)))
    calibration.reload()
    ledger = tmp_path / "ledger.sqlite3"
    labelled, vectors = hidden_traffic(2, 420, 8)
    replay(ledger, labelled, sha=sha, vectors=vectors)

    async def scenario() -> RefitOutcome | None:
        with reading(ledger) as writer:
            refitter = refitter_for(home, writer, calibration, refit_after=100)
            return await refitter.check()

    outcome = asyncio.run(scenario())
    assert outcome is not None and outcome.adopted
    stage = outcome.to_json()["model_stage"]
    assert stage["labelled_with_vector"] == 373 and stage["refitted"] is True
    assert stage["refit_auroc"] > stage["carried_auroc"]
    served_now = calibration()
    assert served_now is not None and served_now.probe is not None
    # The router now asks the refitted model stage: it reads the dimension that says "hard".
    assert int(np.argmax(np.abs(served_now.probe.weights))) == 0


def test_fewer_new_labels_than_refit_after_change_nothing(tmp_path: Path) -> None:
    home, sha, calibration = served(tmp_path)
    ledger = tmp_path / "ledger.sqlite3"
    replay(ledger, traffic(2, 60, "zebra"), sha=sha)
    kept = (home / "calibration" / f"{sha}.json").read_bytes()

    async def scenario() -> tuple[RefitOutcome | None, int]:
        with reading(ledger) as writer:
            refitter = refitter_for(home, writer, calibration, refit_after=100)
            return await refitter.check(), refitter.labels

    outcome, labels = asyncio.run(scenario())
    assert outcome is None and 0 < labels < 100
    assert (home / "calibration" / f"{sha}.json").read_bytes() == kept


def test_a_refit_that_does_not_improve_is_reported_and_changes_nothing(tmp_path: Path) -> None:
    home, sha, calibration = served(tmp_path)
    ledger = tmp_path / "ledger.sqlite3"
    # Wrong exactly where the model in use says so already: nothing left to learn.
    replay(ledger, traffic(2, 420, "number"), sha=sha)
    kept = (home / "calibration" / f"{sha}.json").read_bytes()
    # The local model is busy for two looks: the refit stays due until it is idle.
    busy = iter([False, False, True])

    async def scenario() -> tuple[list[RefitOutcome | None], RefitOutcome | None]:
        with reading(ledger) as writer:
            refitter = refitter_for(
                home, writer, calibration, refit_after=50, idle=lambda: next(busy)
            )
            looks = [await refitter.check() for _ in range(3)]
            return looks, refitter.last

    looks, last = asyncio.run(scenario())
    assert next(busy, "spent") == "spent"
    assert looks[:2] == [None, None] and looks[2] is last
    assert last is not None and not last.adopted
    assert "not adopted: the refit does not improve" in last.message
    assert last.to_json()["adopted"] is False
    assert (home / "calibration" / f"{sha}.json").read_bytes() == kept


def test_refit_after_cannot_be_negative(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="refit_after"):
        TrafficRefitter(
            home=tmp_path,
            ledger=LedgerWriter(tmp_path / "l.sqlite3", retention_days=0),
            calibration=CalibratedModel(tmp_path, lambda: None),
            model_name=lambda: "m",
            refit_after=-1,
        )


def test_each_look_loads_the_labelled_requests_the_router_reads_scores_beside(
    tmp_path: Path,
) -> None:
    home, sha, calibration = served(tmp_path)
    ledger = tmp_path / "ledger.sqlite3"
    # Escalated requests labelled too (local answers given in the background), as reading
    # beside labels needs.
    replay(ledger, kinds(2, 120), sha=sha, escalations_shadowed=True)
    memory = LabelledScores()
    model = calibration()
    assert model is not None

    async def scenario() -> tuple[RefitOutcome | None, int, int | None]:
        with reading(ledger) as writer:
            # refit_after 0: it never refits, it only loads the labels.
            refitter = refitter_for(home, writer, calibration, refit_after=0, labelled=memory)
            assert refitter.read_beside() == 0
            return await refitter.check(), refitter.labels, refitter.read_beside()

    outcome, labels, read_beside = asyncio.run(scenario())
    assert read_beside == 120  # /health's calibration.refit.read_beside
    assert outcome is None and labels == 120 and len(memory) == 120
    assert memory.sha256 == sha and memory.usable(model) == 120
    assert calibration() is model  # nothing was refitted
    # The model in use misjudges both kinds of request; read beside the labels, new traffic
    # ranks better than by its scores alone.
    own, read = ranked_beside(memory, model, kinds(3, 200))
    assert own < 0.5 and read > 0.7


def test_an_adopted_refit_reads_the_labels_it_learned_from_with_their_out_of_fold_scores(
    tmp_path: Path,
) -> None:
    home, sha, calibration = served(tmp_path)
    ledger = tmp_path / "ledger.sqlite3"
    replay(ledger, traffic(2, 420, "zebra"), sha=sha)
    memory = LabelledScores()

    async def scenario() -> RefitOutcome | None:
        with reading(ledger) as writer:
            refitter = refitter_for(home, writer, calibration, refit_after=100, labelled=memory)
            return await refitter.check()

    outcome = asyncio.run(scenario())
    assert outcome is not None and outcome.adopted
    refitted = calibration()
    assert refitted is not None
    # The refit records when its newest labelled request arrived (the replay's last).
    assert refitted.meta["refit"]["labels_until"] == T0 + 419
    # ... and the out-of-fold score of every labelled request it learned from, by label time.
    learned = learned_scores(refitted)
    assert len(learned) == 373 and max(learned) == T0 + 419
    assert all(0.0 <= score <= 1.0 for score in learned.values())
    # None of them was escalated (people labelled local answers), so none is read beside yet.
    assert len(memory) == 373 and memory.usable(refitted) == 0

    # Later, shadow comparisons label five requests of before the refit that the router had
    # escalated (people's labels of their cloud answers taught nothing): from the next look
    # on, these and the labels the refit learned from are read beside.
    late = LedgerWriter(ledger, retention_days=0, keep_signals=10_000)
    late.start()
    for index in (4, 13, 22, 31, 40):  # answered in the cloud (index % 9 == 4)
        late.learn_nowait(Label(f"req-{index}", "shadow", False, T0 + 1000))
    late.close()

    async def look() -> None:
        with reading(ledger) as writer:
            await refitter_for(home, writer, calibration, refit_after=0, labelled=memory).check()

    asyncio.run(look())
    assert len(memory) == 378 and memory.usable(refitted) == 378


class Watched(TrafficRefitter):
    """Counts its looks, and says when one has ended."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.looks = 0
        self.looked = asyncio.Event()

    async def look(self) -> None:
        await super().look()
        self.looks += 1
        self.looked.set()


def test_the_first_look_comes_as_soon_as_the_served_model_is_known(tmp_path: Path) -> None:
    home, sha, _ = served(tmp_path)
    ledger = tmp_path / "ledger.sqlite3"
    replay(ledger, kinds(2, 120), sha=sha, escalations_shadowed=True)
    memory = LabelledScores()
    # The server's view while the local model loads: no file yet, so no calibration.
    loaded: list[Path] = []
    calibration = CalibratedModel(home, lambda: loaded[0] if loaded else None)

    async def scenario() -> tuple[int, int | None]:
        with reading(ledger) as writer:
            refitter = Watched(
                home=home,
                ledger=writer,
                calibration=calibration,
                model_name=lambda: "mine",
                refit_after=0,
                labelled=memory,
                poll_s=3600.0,  # the next look, long after this test
                idle_poll_s=0.001,
            )
            task = asyncio.create_task(refitter.run())
            try:
                for _ in range(5):
                    await asyncio.sleep(0.002)
                unknown_looks = refitter.looks  # nothing to look for yet
                loaded.append(tmp_path / "models" / "mine.gguf")  # loaded: looked up at once
                await asyncio.wait_for(refitter.looked.wait(), timeout=60)
            finally:
                task.cancel()
            return unknown_looks, refitter.read_beside()

    unknown_looks, read_beside = asyncio.run(scenario())
    assert unknown_looks == 0
    assert read_beside == 120 and memory.sha256 == sha


def test_refits_go_on_once_old_labelled_requests_are_pruned(tmp_path: Path) -> None:
    home, sha, calibration = served(tmp_path)
    ledger = tmp_path / "ledger.sqlite3"
    # The ledger keeps 420 signals (routing.learn.keep_signals): newer requests push the
    # oldest out, so the number of usable labels stops growing.
    replay(ledger, traffic(2, 420, "zebra"), sha=sha, keep_signals=420)
    memory = LabelledScores()

    async def scenario() -> tuple[RefitOutcome | None, RefitOutcome | None, int, int]:
        with reading(ledger) as writer:
            refitter = refitter_for(home, writer, calibration, refit_after=100, labelled=memory)
            first = await refitter.check()
            before = refitter.labels
            replay(ledger, traffic(4, 150, "zebra"), sha=sha, first=420, keep_signals=420)
            return first, await refitter.check(), before, refitter.labels

    first, second, before, after = asyncio.run(scenario())
    assert first is not None and first.labels == before == 373
    # About as many usable labels as before (the 150 oldest requests were pruned): fewer than
    # refit_after more, but over 100 of them are new, so the second refit runs, on those kept.
    assert after - before < 100
    assert second is not None and second.labels == after
    assert len(memory) == after and max(r.time for r in memory.requests) == T0 + 569


def test_a_label_that_replaces_another_reaches_the_router_at_the_next_look(
    tmp_path: Path,
) -> None:
    home, sha, calibration = served(tmp_path)
    ledger = tmp_path / "ledger.sqlite3"
    replay(ledger, kinds(2, 120), sha=sha, escalations_shadowed=True)
    memory = LabelledScores()

    async def scenario() -> tuple[int, int, int, int]:
        with reading(ledger) as writer:
            refitter = refitter_for(home, writer, calibration, refit_after=0, labelled=memory)
            await refitter.check()
            wrong_before = sum(r.wrong for r in memory.requests)
            # Ten shadow labels are given again, each the other way: the count of labelled
            # requests stays the same.
            flips = 0
            for index in range(0, 30, 3):  # shadow labels (index % 3 != 1)
                old = next(r for r in memory.requests if r.time == T0 + index)
                writer.learn_nowait(Label(f"req-{index}", "shadow", old.wrong, T0 + 1000))
                flips += -1 if old.wrong else 1
            await refitter.check()
            return wrong_before, flips, sum(r.wrong for r in memory.requests), refitter.labels

    wrong_before, flips, wrong_after, labels = asyncio.run(scenario())
    assert labels == 120 and len(memory) == 120
    assert wrong_after == wrong_before + flips
    assert sum(r.time == T0 + 1000 for r in memory.requests) == 10


def test_labels_go_on_reaching_the_router_while_a_due_refit_waits_for_idle(
    tmp_path: Path,
) -> None:
    home, sha, calibration = served(tmp_path)
    ledger = tmp_path / "ledger.sqlite3"
    replay(ledger, traffic(2, 420, "zebra"), sha=sha)
    memory = LabelledScores()

    async def scenario() -> tuple[list[RefitOutcome | None], list[int]]:
        with reading(ledger) as writer:
            # The local model never idles: the refit stays due.
            refitter = refitter_for(
                home, writer, calibration, refit_after=100, idle=lambda: False, labelled=memory
            )
            outcomes = [await refitter.check()]
            held = [len(memory)]
            replay(ledger, traffic(4, 60, "zebra"), sha=sha, first=420)
            outcomes.append(await refitter.check())
            held.append(len(memory))
            return outcomes, held

    outcomes, held = asyncio.run(scenario())
    assert outcomes == [None, None]
    assert held[0] == 373 and held[1] > held[0]
    assert calibration() is not None and "refit" not in calibration().meta


def test_a_refit_due_for_a_model_no_longer_served_is_dropped(tmp_path: Path) -> None:
    home, sha, _ = served(tmp_path)
    other = tiny_model(n_layers=3).write(tmp_path / "models" / "other.gguf")
    ledger = tmp_path / "ledger.sqlite3"
    replay(ledger, traffic(2, 420, "zebra"), sha=sha)
    kept = (home / "calibration" / f"{sha}.json").read_bytes()
    serving = [tmp_path / "models" / "mine.gguf"]
    idle = [False]
    calibration = CalibratedModel(home, lambda: serving[0])
    calibration.look_up_now()

    async def scenario() -> tuple[RefitOutcome | None, RefitOutcome | None]:
        with reading(ledger) as writer:
            refitter = refitter_for(
                home, writer, calibration, refit_after=100, idle=lambda: idle[0]
            )
            due = await refitter.check()  # due, but the local model is busy
            serving[0] = other  # the user switches models (POST /v1/hybrid/model)
            calibration.look_up_now()
            idle[0] = True
            return due, await refitter.refit_if_idle()

    due, after_switch = asyncio.run(scenario())
    assert due is None and after_switch is None
    assert (home / "calibration" / f"{sha}.json").read_bytes() == kept


def test_a_refit_is_judged_against_the_calibration_stored_when_it_runs(tmp_path: Path) -> None:
    home, sha, calibration = served(tmp_path)
    ledger = tmp_path / "ledger.sqlite3"
    replay(ledger, traffic(2, 420, "zebra"), sha=sha)
    # `hybrid calibrate` writes a new calibration while the server runs on the one it loaded.
    model = model_in_use()
    save(
        home, sha, dataclasses.replace(model, meta={**model.meta, "model_sha256": sha, "by": "cli"})
    )

    async def scenario() -> RefitOutcome | None:
        with reading(ledger) as writer:
            return await refitter_for(home, writer, calibration, refit_after=100).check()

    outcome = asyncio.run(scenario())
    assert outcome is not None and outcome.adopted
    stored = find(home, sha)
    # The refit was made from the stored calibration (its metadata carried over), not from the
    # one the server had loaded.
    assert stored is not None and stored.model.meta["by"] == "cli"
    assert stored.model.meta["refitted_by"] == "traffic"


def test_a_refit_does_not_overwrite_a_calibration_written_while_it_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, sha, calibration = served(tmp_path)
    ledger = tmp_path / "ledger.sqlite3"
    replay(ledger, traffic(2, 420, "zebra"), sha=sha)
    model = model_in_use()
    written = dataclasses.replace(model, meta={**model.meta, "model_sha256": sha, "by": "cli"})
    real = learning.refit

    def racing(*args: Any, **kwargs: Any) -> Any:
        save(home, sha, written)  # `hybrid calibrate` saves while the refit computes
        return real(*args, **kwargs)

    monkeypatch.setattr(learning, "refit", racing)

    async def scenario() -> RefitOutcome | None:
        with reading(ledger) as writer:
            return await refitter_for(home, writer, calibration, refit_after=100).check()

    outcome = asyncio.run(scenario())
    assert outcome is not None and not outcome.adopted
    assert "calibration file changed while refitting" in outcome.message
    stored = find(home, sha)
    assert stored is not None and stored.model.meta["by"] == "cli"
    assert "refitted_by" not in stored.model.meta
