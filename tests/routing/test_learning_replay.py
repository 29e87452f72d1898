"""Replaying labelled traffic through the real ledger and the refit path.

Synthetic requests are answered wrong when they mention a zebra, something the difficulty
model in use never learned (it was fitted to requests that are wrong when they hold a number).
Their signals and labels go through the ledger's writer (journal, SQLite) as the server writes
them; ``hybrid calibrate --from-ledger``'s refit then learns the zebras, and the held-out AUROC
on labelled requests rises.  Traffic that teaches nothing new (the numbers the model already
knows) gives a refit that does not improve, and it is not adopted.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gguf_writer import tiny_model
from labelled_traffic import (
    SHA,
    carried_probe,
    features,
    hidden_traffic,
    model_in_use,
    replay,
    traffic,
)
from postgres import PASSWORD, PostgresDatabase

from hybrid.cli import main
from hybrid.cli.calibrate_ledger import refit_from_ledger
from hybrid.errors import CalibrationRejectedError, ConfigError
from hybrid.ledger.learning import LabelledSignal, Signal
from hybrid.routing.calibration.acceptance import MIN_HELD_OUT_ITEMS, MIN_HELD_OUT_PER_CLASS
from hybrid.routing.calibration.fitting import WORD_WEIGHT, train_feature_model
from hybrid.routing.calibration.items import calibration_set
from hybrid.routing.calibration.learning import Refit
from hybrid.routing.calibration.learning import refit as learning_refit
from hybrid.routing.calibration.metrics import auroc
from hybrid.routing.calibration.probe_fitting import two_stage_scores
from hybrid.routing.calibration.record import AnswerRecord
from hybrid.routing.calibration.refit_examples import (
    Example,
    Source,
    calibration_examples,
    ledger_examples,
)
from hybrid.routing.calibration.runner import ItemAnswer
from hybrid.routing.difficulty.features import FEATURE_VERSION
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.probe import EVERY_WEIGHT, Blend, ProbeStage
from hybrid.routing.difficulty.store import find, gguf_sha256, model_path, save


def refit(home: Path, ledger: Path, out: io.StringIO | None = None) -> Refit:
    """``hybrid calibrate --from-ledger`` for the model ``SHA`` (seed 0, 30 % held out)."""
    return refit_from_ledger(
        home=home,
        ledger=ledger,
        sha256=SHA,
        model_name="m",
        seed=0,
        held_out=0.3,
        out=out if out is not None else io.StringIO(),
    )


def held_out_auroc(model: DifficultyModel, labelled: list[tuple[str, bool]]) -> float:
    X = np.stack([features(text) for text, _ in labelled])
    return auroc(model.scores(X), np.array([wrong for _, wrong in labelled], dtype=np.float64))


def test_replayed_labels_teach_the_refit_what_the_model_in_use_misjudges(tmp_path: Path) -> None:
    home, ledger = tmp_path / "home", tmp_path / "ledger.sqlite3"
    before = model_in_use()
    save(home, SHA, before)
    replay(ledger, traffic(2, 420, "zebra"))

    out = io.StringIO()
    result = refit(home, ledger, out)

    # The held-out labelled requests: the model in use ranks them by chance, the refit well.
    assert result.adopted and result.held_out_traffic == result.held_out >= 100
    assert result.before_traffic_auroc < 0.65
    assert result.after_traffic_auroc > 0.9
    assert result.after_auroc > result.length_auroc
    # Of 420: 140 people's labels, 47 of them on cloud answers (not used); 280 shadow labels.
    assert dict(result.counts) == {"calibration": 0, "feedback": 93, "shadow": 280, "cascade": 0}
    text = out.getvalue()
    assert "labelled requests    373 (feedback 93, shadow 280, cascade 0)" in text
    assert "not used             47 (feedback on cloud answers only)" in text
    assert f"Adopted: saved to {model_path(home, SHA)}" in text

    # The file the router reads is the refit, and it ranks new traffic of the same kind better.
    stored = find(home, SHA)
    assert stored is not None
    refit_meta: Any = stored.model.meta["refit"]
    assert refit_meta["held_out"] == result.held_out
    fresh = traffic(3, 300, "zebra")
    assert held_out_auroc(before, fresh) < 0.65
    assert held_out_auroc(stored.model, fresh) > 0.9


def test_the_cascade_s_labels_of_declined_answers_teach_the_refit_too(tmp_path: Path) -> None:
    home, ledger = tmp_path / "home", tmp_path / "ledger.sqlite3"
    before = model_in_use()
    save(home, SHA, before)
    # Wrong answers declined (cascade labels); a third of the right ones were shadowed.
    replay(ledger, traffic(2, 420, "zebra"), cascade=True)

    result = refit(home, ledger)

    assert result.counts["cascade"] > 100 and result.counts["shadow"] > 50
    assert result.counts["feedback"] == 0
    assert result.adopted and result.before_traffic_auroc < 0.65
    assert result.after_traffic_auroc > 0.9
    stored = find(home, SHA)
    assert stored is not None
    fresh = traffic(3, 300, "zebra")
    assert held_out_auroc(before, fresh) < 0.65
    assert held_out_auroc(stored.model, fresh) > 0.9


def test_a_shared_ledger_is_refitted_from_its_database(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    home = tmp_path / "home"
    save(home, SHA, model_in_use())
    replay(tmp_path / "journal.sqlite3", traffic(2, 420, "zebra"), url=postgres_db.url)

    out = io.StringIO()
    result = refit_from_ledger(
        home=home,
        ledger=postgres_db.url,
        sha256=SHA,
        model_name="m",
        seed=0,
        held_out=0.3,
        out=out,
    )
    assert result.adopted and dict(result.counts)["shadow"] == 280
    assert "labelled requests    373 (feedback 93, shadow 280, cascade 0)" in out.getvalue()
    # Nothing labelled there: the message names the database, its password masked.
    with pytest.raises(ConfigError, match=r"the ledger postgresql://hybrid:\*\*\*@") as caught:
        refit_from_ledger(
            home=tmp_path / "elsewhere",
            ledger=postgres_db.url,
            sha256="cd" * 32,
            model_name="m",
            seed=0,
            held_out=0.3,
            out=io.StringIO(),
        )
    assert PASSWORD not in str(caught.value)


def test_a_carried_probe_follows_the_refitted_feature_stage(tmp_path: Path) -> None:
    home, ledger = tmp_path / "home", tmp_path / "ledger.sqlite3"
    dim = 8
    probe = ProbeStage(
        weights=np.linspace(-1, 1, dim),
        bias=0.2,
        mean=np.zeros(dim),
        scale=np.ones(dim),
        band=(0.0, 0.01),  # far from where the refit's threshold will be
        threshold=0.4,
        blend=Blend(feature=(5.0, 0.1), probe=(0.3, 1.2)),
        every_threshold=0.5,
    )
    before = dataclasses.replace(
        model_in_use(), probe=probe, meta={**model_in_use().meta, "probe_band_share": 0.3}
    )
    save(home, SHA, before)
    replay(ledger, traffic(2, 420, "zebra"))

    out = io.StringIO()
    refit(home, ledger, out)
    assert "Model stage: carried over (0 labelled requests carry a prompt vector; 5 right" in (
        out.getvalue()
    )

    stored = find(home, SHA)
    assert stored is not None and stored.model.probe is not None
    after = stored.model.probe
    # The probe's own parts stay.
    assert after.weights.tolist() == probe.weights.tolist() and after.threshold == 0.4
    assert after.blend is not None and after.blend.probe == (0.3, 1.2)
    # Its feature side is taken again on the refit: the band holds 30 % of the examples'
    # out-of-fold scores around the new threshold (fewer of the fitted model's own scores,
    # which spread wider), and the blend reads the new scores' scale.
    assert after.band != probe.band and after.in_band(stored.model.threshold)
    scores = stored.model.scores(np.stack([features(text) for text, _ in traffic(2, 420, "zebra")]))
    inside = np.mean([after.in_band(float(x)) for x in scores])
    assert 0.1 < inside < 0.45
    assert after.blend.feature != (5.0, 0.1)
    # The threshold of the score read for every request moves with that score's feature part.
    moved = 0.5 + (1 - EVERY_WEIGHT) * (stored.model.threshold - before.threshold)
    assert stored.model.threshold != before.threshold
    assert after.every_threshold == pytest.approx(moved)


def test_labelled_requests_with_prompt_vectors_refit_the_model_stage(tmp_path: Path) -> None:
    home, ledger = tmp_path / "home", tmp_path / "ledger.sqlite3"
    dim = 8
    before = dataclasses.replace(
        model_in_use(), probe=carried_probe(dim), meta={**model_in_use().meta}
    )
    save(home, SHA, before)
    labelled, vectors = hidden_traffic(2, 420, dim)
    replay(ledger, labelled, vectors=vectors)

    out = io.StringIO()
    result = refit(home, ledger, out)

    assert result.adopted and result.probe is not None and result.probe.adopted
    assert "Model stage: refitted, band 40% of the examples (both stages on the 373 labelled " in (
        out.getvalue()
    )
    stored = find(home, SHA)
    assert stored is not None and stored.model.probe is not None
    said: Any = stored.model.meta["refit"]["probe"]
    assert said["labelled_with_vector"] == 373 and said["refitted"] is True
    assert said["refit_auroc"] > said["carried_auroc"]
    probe = stored.model.probe
    # The refitted probe reads the dimension that says "hard", and the band lets it decide.
    assert int(np.argmax(np.abs(probe.weights))) == 0
    assert probe.band[1] > probe.band[0]
    assert stored.model.meta["probe_band_share"] == said["band_share"] > 0

    # On fresh traffic, both stages as the router decides rank better than the feature stage.
    fresh, fresh_vectors = hidden_traffic(3, 300, dim)
    wrong = np.array([w for _, w in fresh], dtype=np.float64)
    feature = stored.model.scores(np.stack([features(text) for text, _ in fresh]))
    settled = np.array(
        [probe.settle(f, probe.score(v)) for f, v in zip(feature, fresh_vectors, strict=True)]
    )
    both = two_stage_scores(feature, settled, probe.band)
    assert auroc(both, wrong) > auroc(feature, wrong)
    # The requests the band sends to the model stage are the ones it orders better.
    inside = np.array([probe.in_band(float(f)) for f in feature])
    assert inside.sum() >= 30
    assert auroc(both[inside], wrong[inside]) > auroc(feature[inside], wrong[inside]) + 0.025


def test_a_refit_is_judged_on_both_stages_when_the_labelled_requests_carry_vectors(
    tmp_path: Path,
) -> None:
    home, ledger = tmp_path / "home", tmp_path / "ledger.sqlite3"
    dim = 8
    save(home, SHA, dataclasses.replace(model_in_use(), probe=carried_probe(dim)))
    # Wrong only where the local model's view says so: no text feature can tell.
    labelled, vectors = hidden_traffic(2, 420, dim, zebras=False)
    replay(ledger, labelled, vectors=vectors)

    out = io.StringIO()
    result = refit(home, ledger, out)

    # The feature stage alone learns nothing the model in use did not know ...
    assert abs(result.after_traffic_auroc - 0.5) < 0.1
    # ... but what the router decides, both stages together, improves, and that is judged.
    assert result.probe is not None and result.probe.adopted
    judged = result.probe.judged()
    assert judged is not None and judged[0] == 373
    assert judged[1] > judged[2] + 0.03
    assert result.adopted
    stored = find(home, SHA)
    assert stored is not None and stored.model.meta["refit"]["probe"]["refitted"] is True


def test_a_refit_that_does_not_improve_both_stages_is_not_adopted(tmp_path: Path) -> None:
    home, ledger = tmp_path / "home", tmp_path / "ledger.sqlite3"
    dim = 8
    path = save(home, SHA, dataclasses.replace(model_in_use(), probe=carried_probe(dim)))
    kept = path.read_bytes()
    # Wrong exactly where the model in use says so already, and the vectors say nothing.
    labelled = traffic(2, 420, "number")
    noise = [np.random.default_rng(i).normal(size=dim).astype(np.float32) for i in range(420)]
    replay(ledger, labelled, vectors=noise)

    with pytest.raises(
        CalibrationRejectedError, match="with a prompt vector, both stages together"
    ):
        refit(home, ledger)
    assert path.read_bytes() == kept


def test_a_model_stage_the_labels_do_not_improve_is_carried_over(tmp_path: Path) -> None:
    home, ledger = tmp_path / "home", tmp_path / "ledger.sqlite3"
    dim = 8
    carried = carried_probe(dim)
    save(home, SHA, dataclasses.replace(model_in_use(), probe=carried))
    labelled, _ = hidden_traffic(2, 420, dim)
    # The vectors say nothing here: noise.
    noise = [np.random.default_rng(i).normal(size=dim).astype(np.float32) for i in range(420)]
    replay(ledger, [(text, "zebra" in text) for text, _ in labelled], vectors=noise)

    out = io.StringIO()
    refit(home, ledger, out)
    assert "Model stage: carried over, the refit does not rank better (both stages" in (
        out.getvalue()
    )

    stored = find(home, SHA)
    assert stored is not None and stored.model.probe is not None
    said: Any = stored.model.meta["refit"]["probe"]
    # A probe refitted on noise does not rank the labelled requests better than the one in
    # use: that one stays.
    assert said["labelled_with_vector"] == 373 and said["refitted"] is False
    assert said["refit_auroc"] <= said["carried_auroc"]
    assert stored.model.probe.weights.tolist() == carried.weights.tolist()


def test_a_refit_that_does_not_improve_is_not_adopted(tmp_path: Path) -> None:
    home, ledger = tmp_path / "home", tmp_path / "ledger.sqlite3"
    path = save(home, SHA, model_in_use())
    kept = path.read_bytes()
    # Traffic wrong exactly where the model in use already says so: nothing left to learn.
    replay(ledger, traffic(2, 420, "number"))

    out = io.StringIO()
    with pytest.raises(CalibrationRejectedError, match="does not improve on the model in use"):
        refit(home, ledger, out)
    assert path.read_bytes() == kept
    assert "Adopted" not in out.getvalue()


def test_too_few_labels_are_not_enough_to_refit(tmp_path: Path) -> None:
    home, ledger = tmp_path / "home", tmp_path / "ledger.sqlite3"
    replay(ledger, traffic(2, 40, "zebra"))
    with pytest.raises(CalibrationRejectedError, match="too few to trust"):
        refit(home, ledger)
    assert find(home, SHA, shipped=tmp_path / "none") is None


@pytest.mark.parametrize(
    ("labelled", "counted"),
    [
        ([("please tell me about the zebra", True)], "1 labelled request (0 answered right, 1"),
        (
            [("please tell me about the zebra", True), ("tell me about the river", False)],
            "2 labelled requests (1 answered right, 1 wrong)",
        ),
    ],
)
def test_one_or_two_labels_say_how_many_are_needed_and_how_to_label_more(
    tmp_path: Path, labelled: list[tuple[str, bool]], counted: str
) -> None:
    # Without calibration answers, one label, or one of each class, leaves nothing to hold out.
    home, ledger = tmp_path / "home", tmp_path / "ledger.sqlite3"
    replay(ledger, labelled)
    with pytest.raises(ConfigError) as raised:
        refit(home, ledger)
    message = str(raised.value)
    assert message.startswith("cannot refit m: ") and counted in message
    assert "0 calibration answers" in message
    assert "about 167 labelled requests, at least 32 right and 32 wrong" in message
    assert "POST /v1/hybrid/feedback" in message and "routing.learn.shadow_rate" in message
    assert find(home, SHA, shipped=tmp_path / "none") is None


@pytest.mark.parametrize(("right", "wrong"), [(84, 83), (32, 135)])
def test_the_labels_the_error_asks_for_are_enough_to_measure_a_refit(
    right: int, wrong: int
) -> None:
    # The error above asks for about 167 labelled requests, at least 32 of each class.
    rng = np.random.default_rng(0)
    size = features("x").shape
    labelled = [
        Example(rng.normal(size=size), index >= right, 10.0, "feedback")
        for index in range(right + wrong)
    ]
    result = learning_refit(None, labelled, seed=0)
    assert result.held_out >= MIN_HELD_OUT_ITEMS
    assert min(result.held_out_wrong, result.held_out - result.held_out_wrong) == (
        MIN_HELD_OUT_PER_CLASS if right == 32 else 25
    )


def test_hybrid_calibrate_from_ledger_refits_the_configured_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tiny_model().write(tmp_path / "models" / "mine.gguf")
    home = tmp_path / "home"
    monkeypatch.setenv("HYBRID_HOME", str(home))
    monkeypatch.setenv("HYBRID_LOCAL__MODEL", str(model))
    sha = gguf_sha256(model)
    replay(home / "ledger.sqlite3", traffic(2, 420, "zebra"), sha=sha)

    assert main(["calibrate", "--from-ledger"], commands={"calibrate": "hybrid.cli.calibrate"}) == 0
    assert "Refit the difficulty model of mine" in capsys.readouterr().out
    assert model_path(home, sha).is_file()


def test_with_nothing_labelled_the_command_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tiny_model().write(tmp_path / "models" / "mine.gguf")
    monkeypatch.setenv("HYBRID_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HYBRID_LOCAL__MODEL", str(model))
    assert main(["calibrate", "--from-ledger"], commands={"calibrate": "hybrid.cli.calibrate"}) == 2
    assert "POST /v1/hybrid/feedback" in capsys.readouterr().err


def test_hybrid_stats_counts_each_models_labels_by_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HYBRID_HOME", str(home))
    # The first 15 requests kept the local model's vector of their prompt.
    vectors = [np.ones(8, dtype=np.float32) if i < 15 else None for i in range(30)]
    replay(home / "ledger.sqlite3", traffic(2, 30, "zebra"), vectors=vectors)
    commands = {"stats": "hybrid.cli.stats"}

    assert main(["stats", "--json"], commands=commands) == 0
    labels = json.loads(capsys.readouterr().out)["labels"]
    # 10 people's labels (3 of them on cloud answers: requests 4, 13 and 22), 20 shadow labels.
    assert labels == [
        {
            "model_sha256": SHA,
            "feedback": 10,
            "shadow": 20,
            "cascade": 0,
            "usable": 27,
            "with_vector": 13,
            "shadow_escalated": 0,
        }
    ]
    assert main(["stats"], commands=commands) == 0
    assert (
        "labels        model abababababab: 10 feedback, 20 shadow, 0 cascade; 27 usable by a "
        "refit, 13 with a prompt vector" in (capsys.readouterr().out)
    )


def test_recorded_calibration_answers_are_examples_while_they_match_the_items(
    tmp_path: Path,
) -> None:
    items = calibration_set(0, per_category=2)
    answers = tuple(ItemAnswer(item.id, ("x",), index % 2 == 0) for index, item in enumerate(items))
    record = AnswerRecord(SHA, 0, 2, 24, tuple(item.prompt for item in items), answers)
    examples = calibration_examples(record)
    assert examples is not None and len(examples) == len(items)
    assert [e.wrong for e in examples] == [index % 2 == 1 for index in range(len(items))]
    assert {e.source for e in examples} == {"calibration"}
    changed = dataclasses.replace(record, prompts=("another question", *record.prompts[1:]))
    assert calibration_examples(changed) is None


def test_each_label_source_says_what_it_can_of_the_local_answer() -> None:
    def row(route: str, **labels: bool) -> LabelledSignal:
        text = f"Say hello from {route} ({sorted(labels)})"
        signal = Signal.of(
            request_id=text,
            time=0.0,
            model_sha256=SHA,
            feature_version=FEATURE_VERSION,
            features=features(text),
            route=route,
            score=0.3,
            prompt_chars=len(text),
        )
        return LabelledSignal(
            signal, labels.get("feedback"), labels.get("shadow"), labels.get("cascade")
        )

    rows = [
        row("local", feedback=True, shadow=False),  # the person wins
        row("cloud", shadow=True),
        row("cloud", cascade=False),  # the local answer declined, the cloud answered
        row("cloud", feedback=False),  # about the cloud's answer: says nothing
        row("cloud", shadow=True, cascade=False),
    ]
    found = ledger_examples(None, rows)
    assert [(e.source, e.wrong) for e in found.traffic] == [
        ("feedback", False),
        ("shadow", False),
        ("cascade", True),
        ("shadow", False),
    ]
    assert (found.unused, found.stale, found.calibration) == (1, 0, None)


def examples(labelled: list[tuple[str, bool]], source: Source) -> list[Example]:
    return [Example(features(text), wrong, float(len(text)), source) for text, wrong in labelled]


def test_few_labelled_requests_outweigh_many_calibration_answers_that_disagree() -> None:
    # 600 calibration answers say numbers are hard; 160 labelled requests of the user's own
    # traffic say zebras are.  Counted one for one, the calibration answers drown them out.
    calibration = examples(traffic(4, 600, "number"), "calibration")
    labelled = examples(traffic(5, 160, "zebra"), "feedback")
    result = learning_refit(model_in_use(), calibration + labelled, seed=0)

    assert result.traffic_weight > 1.0
    assert result.model.meta["refit"]["traffic_weight"] == result.traffic_weight  # type: ignore[index]
    # Only the words tell a zebra: the refit reads them.
    assert result.word_weight > 0.0 and result.model.words
    assert result.model.meta["refit"]["word_weight"] == result.word_weight  # type: ignore[index]
    fresh = traffic(6, 300, "zebra")
    X = np.stack([e.features for e in calibration + labelled])
    y = np.array([e.wrong for e in calibration + labelled], dtype=np.float64)
    unweighted, _, _ = train_feature_model(X, y, seed=0, word_weight=result.word_weight)
    assert held_out_auroc(result.model, fresh) > held_out_auroc(unweighted, fresh) + 0.1


def test_the_refit_adopted_is_fitted_on_every_example_with_the_weights_it_chose() -> None:
    calibration = examples(traffic(4, 300, "number"), "calibration")
    labelled = examples(traffic(5, 120, "zebra"), "feedback")
    result = learning_refit(model_in_use(), calibration + labelled, seed=0)

    everything = calibration + labelled
    X = np.stack([e.features for e in everything])
    y = np.array([e.wrong for e in everything], dtype=np.float64)
    weight = np.array(
        [result.traffic_weight if e.source != "calibration" else 1.0 for e in everything]
    )
    whole, _, _ = train_feature_model(
        X, y, seed=0, sample_weight=weight, word_weight=result.word_weight
    )
    assert np.allclose(result.model.weights, whole.weights)
    assert result.model.threshold == pytest.approx(whole.threshold)
    # The figures that judged it are the split's: some examples were held out from that fit.
    meta = result.model.meta
    assert result.held_out == meta["held_out_items"] > 0
    assert meta["items"] == len(everything) == meta["train_items"] + meta["held_out_items"]


def test_too_few_labelled_requests_of_a_kind_leave_every_example_weighing_one() -> None:
    calibration = examples(traffic(4, 300, "number"), "calibration")
    # Four labelled requests: only a handful of each class cannot choose a weight.
    labelled = examples(traffic(5, 4, "zebra"), "feedback")
    result = learning_refit(None, calibration + labelled, seed=0)
    assert (result.traffic_weight, result.word_weight) == (1.0, WORD_WEIGHT)


def test_every_labelled_request_judges_a_refit_not_only_the_few_held_out() -> None:
    calibration = examples(traffic(4, 600, "number"), "calibration")
    # 40 labelled requests: 12 held out, too few of each class to judge on alone; all 40,
    # each scored by a fit that did not see it, are enough.
    few = learning_refit(
        model_in_use(), calibration + examples(traffic(5, 40, "zebra"), "feedback"), seed=0
    )
    assert few.held_out_traffic == 12
    assert few.rejection is not None
    assert "on the 40 labelled requests, each scored by a fit that did not see it" in few.rejection
    more = learning_refit(
        model_in_use(), calibration + examples(traffic(5, 60, "zebra"), "feedback"), seed=0
    )
    assert more.held_out_traffic == 18 and more.adopted
    assert more.after_traffic_auroc > more.before_traffic_auroc


def test_enough_labelled_requests_decide_the_comparison_with_the_model_in_use() -> None:
    from hybrid.routing.calibration.refit_acceptance import review

    # The model in use scores its own calibration answers well (it was fitted on them); on
    # the user's labelled requests the refit is better, and that decides.
    assert review(300, 150, 0.80, 0.60, 0.86, traffic=(60, 0.78, 0.62)) is None
    worse = review(300, 150, 0.90, 0.60, 0.86, traffic=(60, 0.60, 0.62))
    assert worse is not None
    assert "on the 60 labelled requests, each scored by a fit that did not see it" in worse
    assert "(AUROC 0.600, against 0.620 now)" in worse
    # Without enough labelled requests held out, every held-out example decides, as before.
    assert "on the 300 held-out examples" in (review(300, 150, 0.80, 0.60, 0.86) or "")
    # The other checks stand whatever the labelled requests say.
    assert "too few to trust" in (review(30, 15, 0.9, 0.6, 0.5, traffic=(60, 0.9, 0.5)) or "")
    worse_than_length = review(300, 150, 0.5, 0.6, 0.4, traffic=(60, 0.9, 0.5))
    assert "worse than their length" in (worse_than_length or "")
