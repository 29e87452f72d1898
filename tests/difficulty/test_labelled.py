"""A score read beside the labelled requests most like it: moved by n / (n + PRIOR) x how far
the model in use was off on its n nearest (at most ``neighbours``, cosine at least 0.3), only
beside the labelled requests of its own local model, those it learned from by the out-of-fold
scores it recorded of them."""

from __future__ import annotations

import pytest
from kinds_of_request import asked, model, request
from labelled_traffic import features, kinds, model_in_use, ranked_beside

from hybrid.routing.difficulty.labelled import (
    MIN_ESCALATED,
    PRIOR,
    LabelledRequest,
    LabelledScores,
    learned_scores,
    learned_until,
)
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.policies.difficulty import DifficultyPolicy

SHA = "cd" * 32


def scorer(**meta: object) -> DifficultyModel:
    """Scores sigmoid(features[0]), for the local model :data:`SHA`."""
    return model(meta={"model_sha256": SHA, **meta})


def labelled(
    kind: int, wrong: list[bool], *, start: float = 100.0, escalated: bool = True
) -> list[LabelledRequest]:
    return [
        LabelledRequest(request(kind), bad, start + index, escalated)
        for index, bad in enumerate(wrong)
    ]


def test_a_score_moves_by_how_far_the_model_was_off_on_the_nearest_labelled_requests() -> None:
    in_use = scorer()
    memory = LabelledScores()
    # Three labelled requests of kind 0, two answered wrong; the model scored each 0.5. (And
    # labels of another kind, which none of kind 0 is like.)
    others = labelled(5, [False] * MIN_ESCALATED, start=0.0)
    memory.load(SHA, others + labelled(0, [True, True, False]))
    assert len(memory) == 3 + MIN_ESCALATED and memory.usable(in_use) == 3 + MIN_ESCALATED
    read = memory.read(in_use, request(0, 0.4), 0.3)
    assert read == pytest.approx(0.3 + 3 / (3 + PRIOR) * (2 / 3 - 0.5))
    # One of another kind (cosine 0) keeps its score; so does every score before any label.
    assert memory.read(in_use, request(1), 0.3) == 0.3
    assert LabelledScores().read(in_use, request(0), 0.3) == 0.3
    # The step stays within [0, 1].
    memory.load(SHA, labelled(0, [True] * 40))
    assert memory.read(in_use, request(0), 0.95) == 1.0


def test_labels_of_local_answers_alone_are_not_read_beside() -> None:
    in_use = scorer()
    memory = LabelledScores()
    # People's labels of local answers only: the requests the router found easiest.
    memory.load(SHA, labelled(0, [True] * 20, escalated=False))
    assert len(memory) == 20 and memory.usable(in_use) == 0
    assert memory.read(in_use, request(0), 0.3) == 0.3
    # With as many labels of escalated requests as it takes, every label is read beside.
    both = labelled(0, [True] * 20, escalated=False)
    both += labelled(0, [True] * MIN_ESCALATED, start=200.0)
    memory.load(SHA, both)
    assert memory.usable(in_use) == 20 + MIN_ESCALATED
    assert memory.read(in_use, request(0), 0.3) > 0.3


def test_only_the_nearest_neighbours_count_and_the_most_recent_are_kept() -> None:
    in_use = scorer()
    memory = LabelledScores(neighbours=2, size=3, min_escalated=1)
    # Four labelled requests of kind 0: only the three most recent are kept, and two of
    # those read (all alike: the argpartition picks any two, all wrong).
    memory.load(SHA, labelled(0, [False, True, True, True]))
    assert len(memory) == 3
    assert memory.read(in_use, request(0), 0.5) == pytest.approx(0.5 + 2 / (2 + PRIOR) * 0.5)
    with pytest.raises(ValueError, match="at least 1"):
        LabelledScores(neighbours=0)


def test_labels_of_another_local_model_or_learned_by_a_refit_without_scores_are_not_read() -> None:
    memory = LabelledScores()
    memory.load(SHA, labelled(0, [True] * 5, start=100.0) + labelled(0, [False] * 5, start=200.0))
    # A difficulty model for another GGUF file reads none of them.
    other = model(meta={"model_sha256": "ef" * 32})
    assert memory.usable(other) == 0 and memory.read(other, request(0), 0.5) == 0.5
    # A refit that learned from the labelled requests up to 150 s reads only the later ones.
    refitted = scorer(refit={"labels_until": 150.0})
    assert learned_until(refitted) == 150.0 and learned_until(scorer()) == float("-inf")
    assert memory.usable(refitted) == 5
    assert memory.read(refitted, request(0), 0.5) == pytest.approx(0.5 - 5 / (5 + PRIOR) * 0.5)
    # A later load replaces them.
    memory.load(SHA, [])
    assert len(memory) == 0 and memory.usable(scorer()) == 0


def test_labels_a_refit_learned_from_are_read_with_the_out_of_fold_scores_it_recorded() -> None:
    memory = LabelledScores()
    memory.load(SHA, labelled(0, [True] * 5, start=100.0) + labelled(0, [False] * 5, start=200.0))
    # The refit learned from the first five and recorded out-of-fold scores of the newest three
    # (0.9, where its own score is 0.5: a refit records the most recent it learned from):
    # those three are read with 0.9, the two older not at all, the five labelled later with
    # its own scores.
    refitted = scorer(
        refit={"labels_until": 150.0, "out_of_fold": [[102.0, 0.9], [103.0, 0.9], [104.0, 0.9]]}
    )
    assert learned_scores(refitted) == {102.0: 0.9, 103.0: 0.9, 104.0: 0.9}
    assert learned_scores(scorer()) == {} and learned_scores(scorer(refit={"out_of_fold": 3})) == {}
    assert memory.usable(refitted) == 8
    off = 3 / 8 - (3 * 0.9 + 5 * 0.5) / 8
    assert memory.read(refitted, request(0), 0.5) == pytest.approx(0.5 + 8 / (8 + PRIOR) * off)


def test_read_beside_labels_a_model_that_misjudges_two_kinds_ranks_them() -> None:
    in_use = model_in_use()
    memory = LabelledScores()
    sha = str(in_use.meta["model_sha256"])
    memory.load(
        sha,
        [LabelledRequest(features(t), w, i, i % 2 == 0) for i, (t, w) in enumerate(kinds(2, 60))],
    )
    own, read = ranked_beside(memory, in_use, kinds(3, 200))
    assert own < 0.5 and read > 0.7


def test_the_policy_reads_its_score_beside_the_labelled_requests() -> None:
    in_use = model_in_use()  # fitted on requests that were wrong when they held a number
    sha = str(in_use.meta["model_sha256"])
    text = "please tell me about the 42 bridge in the city this summer"
    context = asked(text)
    memory = LabelledScores()
    policy = DifficultyPolicy(lambda: in_use, threshold=0.5, labelled=memory)
    before = policy.evaluate(context)
    assert before.outcome == "cloud"
    # Requests like it, each with another number, were answered right, every one.
    alike = [text.replace("42", str(number)) for number in range(10, 30)]
    memory.load(sha, [LabelledRequest(features(t), False, i, True) for i, t in enumerate(alike)])
    after = policy.evaluate(context)
    assert after.outcome == "local" and after.score is not None and after.score < 0.5
    assert after.reason.startswith("difficulty:")


def test_a_label_stamped_by_a_clock_behind_a_refit_is_read_as_a_new_one() -> None:
    memory = LabelledScores()
    # Three labels the refit learned from (to 150 s), and one written after it by a daemon
    # whose clock is behind: stamped 120 s, with no score recorded though as late as those.
    memory.load(
        SHA,
        labelled(0, [True] * 3, start=100.0)
        + labelled(0, [False], start=120.0)
        + labelled(0, [False] * MIN_ESCALATED, start=200.0),
    )
    refitted = scorer(
        refit={"labels_until": 150.0, "out_of_fold": [[100.0, 0.9], [101.0, 0.9], [102.0, 0.9]]}
    )
    assert memory.usable(refitted) == 4 + MIN_ESCALATED
    n = 4 + MIN_ESCALATED
    off = 3 / n - (3 * 0.9 + (1 + MIN_ESCALATED) * 0.5) / n
    assert memory.read(refitted, request(0), 0.5) == pytest.approx(0.5 + n / (n + PRIOR) * off)
