"""The two-stage difficulty decision: the probe settles the feature stage's unsure scores."""

from __future__ import annotations

import asyncio
import io
import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from fake_cloud import closed_port
from routing_fakes import LAN_POLICY, Replay

from hybrid.backend import Generation
from hybrid.cli import route as route_cmd
from hybrid.errors import GenerationError, HybridError, ModelNotReadyError, QueueFullError
from hybrid.generation import (
    GenerationRequest,
    Message,
    SamplingParams,
)
from hybrid.lan.pool import LanPool
from hybrid.local.speed import SpeedMeter
from hybrid.routing.answer import Mode
from hybrid.routing.chain import build_router
from hybrid.routing.difficulty.features import FEATURE_VERSION, N_FEATURES
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.probe import Blend, ProbeStage
from hybrid.routing.dispatcher import Dispatcher
from hybrid.routing.lan import LanTier
from hybrid.routing.model_stage import stage_of
from hybrid.routing.names import ModelNames, ProviderModels
from hybrid.settings.lan import LanSettings
from hybrid.settings.routing import DifficultySettings, ModelStage, RoutingSettings

LOCAL = "local-model"
HARD = np.array([2.0, 0.0, 0.0, 0.0], dtype=np.float32)  # the probe scores it 0.88
EASY = np.array([-2.0, 0.0, 0.0, 0.0], dtype=np.float32)  # 0.12


class VectorLocal:
    """A runtime and its backend whose ``prompt_embedding`` returns a set vector."""

    model_id = LOCAL
    context_length = 8192
    supports: frozenset[str] = frozenset()
    queue = SimpleNamespace(depth=0, slots=1, running=0, expected_wait_s=lambda: 0.0)
    speed = SpeedMeter()
    state = "ready"

    def __init__(self, vector: np.ndarray = HARD, *, fail: HybridError | None = None) -> None:
        self.vector = vector
        self.fail = fail
        self.embedding_size = 4
        self.embedded: list[Any] = []
        self.started: list[Any] = []
        self.released = 0

    def release_hand_off(self) -> None:
        self.released += 1

    def backend(self) -> VectorLocal:
        return self

    async def prepare(self, request: GenerationRequest) -> Any:
        return SimpleNamespace(tokens=[0] * 10, max_tokens=request.params.max_tokens or 100)

    async def prompt_embedding(
        self, request: GenerationRequest, *, prepared: Any = None
    ) -> np.ndarray:
        self.embedded.append(prepared)
        if self.fail is not None:
            raise self.fail
        return self.vector

    async def start(self, request: GenerationRequest, *, prepared: Any = None) -> Generation:
        self.started.append(prepared)
        return Replay("local answer")


class Cloud:
    name = "openai"

    def __init__(self) -> None:
        self.asked = 0

    async def start(self, request: GenerationRequest) -> Generation:
        self.asked += 1
        return Replay("cloud answer")


def difficulty(
    feature_score_logit: float,
    *,
    probe: bool = True,
    blend: Blend | None = None,
    every_threshold: float | None = 0.5,
) -> DifficultyModel:
    """A model that scores every prompt sigmoid(logit), with a probe over 4-value vectors."""
    stage = ProbeStage(
        weights=np.array([1.0, 0.0, 0.0, 0.0]),
        bias=0.0,
        mean=np.zeros(4),
        scale=np.ones(4),
        band=(0.3, 0.7),
        threshold=0.5,
        blend=blend,
        every_threshold=every_threshold,
    )
    return DifficultyModel(
        weights=np.zeros(N_FEATURES),
        bias=feature_score_logit,
        threshold=0.5,
        feature_version=FEATURE_VERSION,
        mean=np.zeros(N_FEATURES),
        scale=np.ones(N_FEATURES),
        probe=stage if probe else None,
    )


UNSURE = 0.4  # logit: the feature stage scores 0.60, inside the band (escalates on its own)


def dispatcher(
    local: VectorLocal,
    model: DifficultyModel,
    *,
    cloud: bool = True,
    model_stage: ModelStage | bool = True,
    mode: Mode = "auto",
    threshold: float | None = None,
    prompt_vectors: bool = False,
    lan: LanTier | None = None,
) -> tuple[Dispatcher, Cloud]:
    provider = Cloud()
    names = ModelNames([ProviderModels("openai", ("gpt-4.1-mini",), usable=cloud)], None)
    settings = RoutingSettings(
        difficulty=DifficultySettings(model_stage=model_stage, threshold=threshold)
    )
    router = build_router(settings, difficulty=lambda: model)
    built = Dispatcher(
        local,  # type: ignore[arg-type]
        {"openai": provider} if cloud else {},  # type: ignore[dict-item]
        names,
        router=router,
        prompt_vectors=prompt_vectors,
        lan=lan,
    )
    built.mode = mode
    return built, provider


def ask(text: str = "What is the derivative of x squared?", **kwargs: Any) -> GenerationRequest:
    return GenerationRequest("r1", messages=(Message("user", text),), **kwargs)


def start(built: Dispatcher, request: GenerationRequest | None = None, **kwargs: Any) -> Any:
    return asyncio.run(built.start(request or ask(), model=kwargs.pop("model", "hybrid"), **kwargs))


@pytest.mark.parametrize(("logit", "route"), [(-3.0, "local"), (3.0, "cloud")])
def test_clear_cases_never_ask_the_local_model(logit: float, route: str) -> None:
    local = VectorLocal()
    built, _ = dispatcher(local, difficulty(logit))
    answer = start(built)
    assert local.embedded == []
    assert answer.route == route
    assert "probe" not in answer.reason and answer.reason.startswith("difficulty:")
    assert stage_of(asyncio.run(built.plan(ask(), model="hybrid")).decision) == "feature"


def test_an_unsure_case_the_probe_finds_hard_goes_to_the_cloud() -> None:
    local = VectorLocal(HARD)
    built, cloud = dispatcher(local, difficulty(-UNSURE))  # the features alone: local (0.40)
    answer = start(built)
    assert len(local.embedded) == 1 and cloud.asked == 1
    assert (answer.route, answer.reason) == ("cloud", "difficulty:0.40~probe:0.88>0.50")
    assert answer.headers()["X-Hybrid-Score"] == "0.881"
    policies = [(v.policy, v.outcome) for v in answer.verdicts]
    assert policies[-2:] == [("difficulty", "local"), ("probe", "cloud")]
    # The difficulty verdict keeps the feature stage's own score (what learning refits on).
    assert answer.verdicts[-2].score == pytest.approx(0.401, abs=1e-3)
    # No local answer follows: background work on the local model may run again at once.
    assert local.released == 1
    # The vector goes out with the answer, for the ledger's learning signals.
    assert answer.prompt_vector is HARD


def test_an_unsure_case_the_probe_finds_easy_stays_local_on_the_evaluated_prompt() -> None:
    local = VectorLocal(EASY)
    built, cloud = dispatcher(local, difficulty(UNSURE))  # the features alone: cloud (0.60)
    answer = start(built)
    assert (answer.route, answer.reason) == ("local", "difficulty:0.60~probe:0.12<=0.50")
    assert cloud.asked == 0
    assert answer.score == pytest.approx(0.119, abs=1e-3)
    # The answer starts from the very job whose prompt the probe evaluated: its prefix is reused.
    assert local.started == local.embedded and local.started[0] is not None
    assert local.released == 0  # the answer is the hand-off's follow-up
    assert answer.prompt_vector is EASY


def test_a_blended_probe_settles_the_band_on_both_stages_together() -> None:
    # Feature log-odds spread 0.2 on the training items, the probe's 4.0: the feature stage's
    # 0.60 (log-odds 0.4, two spreads above its mean) outweighs the probe's 0.12 (-2.0, half
    # a spread below its mean).
    blend = Blend(feature=(0.0, 0.2), probe=(0.0, 4.0))
    local = VectorLocal(EASY)
    built, cloud = dispatcher(local, difficulty(UNSURE, blend=blend))

    answer = start(built)

    settled = 1 / (1 + np.exp(-(0.4 / 0.2 - 2.0 / 4.0) / 2))  # 0.68
    assert (answer.route, answer.reason) == ("cloud", f"difficulty:0.60~probe:{settled:.2f}>0.50")
    assert answer.score == pytest.approx(settled, abs=1e-6) and cloud.asked == 1
    assert answer.verdicts[-2].score == pytest.approx(0.599, abs=1e-3)  # the feature stage's


@pytest.mark.parametrize(("threshold", "route"), [(0.0, "cloud"), (1.0, "local")])
def test_a_user_threshold_of_0_or_1_decides_without_asking_the_model(
    threshold: float, route: str
) -> None:
    local = VectorLocal(EASY if route == "cloud" else HARD)  # the probe would say otherwise
    built, _ = dispatcher(local, difficulty(UNSURE), threshold=threshold)

    answer = start(built)

    assert local.embedded == []
    assert answer.route == route and "probe" not in answer.reason


def test_a_user_threshold_moves_the_probes_threshold_by_the_same_step() -> None:
    # The feature threshold goes from the fitted 0.50 to 0.90 (log-odds 0 to 2.2): the probe's,
    # fitted at 0.50, moves to 0.90 too, and its 0.88 for the hard vector now keeps it local.
    local = VectorLocal(HARD)
    built, cloud = dispatcher(local, difficulty(UNSURE), threshold=0.9)

    answer = start(built)

    assert len(local.embedded) == 1 and cloud.asked == 0
    assert (answer.route, answer.reason) == ("local", "difficulty:0.60~probe:0.88<=0.90")


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (QueueFullError(depth=5, retry_after=2.0), "queue_full"),
        (ModelNotReadyError("loading"), "not_ready"),
        (GenerationError("llama.cpp failed"), "failed"),
    ],
)
def test_a_probe_that_cannot_run_leaves_the_feature_decision(
    failure: HybridError, code: str
) -> None:
    local = VectorLocal(fail=failure)
    built, cloud = dispatcher(local, difficulty(UNSURE))
    answer = start(built)
    assert len(local.embedded) == 1
    assert answer.route == "cloud" and cloud.asked == 1
    assert answer.reason == f"difficulty:0.60>0.50~probe_unavailable:{code}"
    assert answer.score == pytest.approx(0.599, abs=1e-3)
    plan = asyncio.run(built.plan(ask(), model="hybrid"))
    assert stage_of(plan.decision) == "feature_fallback"


def test_a_prompt_kept_local_outside_the_band_keeps_its_vector_for_learning() -> None:
    local = VectorLocal(EASY)
    built, cloud = dispatcher(local, difficulty(-3.0), prompt_vectors=True)
    answer = start(built)
    # The decision is the feature stage's alone, as without the vector.
    assert (answer.route, answer.reason) == ("local", "difficulty:0.05<=0.50")
    assert stage_of(asyncio.run(built.plan(ask(), model="hybrid")).decision) == "feature"
    assert cloud.asked == 0
    # The answer starts from the job whose prompt was evaluated, and follows the hand-off.
    assert local.started[0] is local.embedded[0] and local.started[0] is not None
    assert local.released == 0
    assert answer.prompt_vector is EASY


def test_a_prompt_escalated_outside_the_band_keeps_no_vector() -> None:
    local = VectorLocal()
    built, cloud = dispatcher(local, difficulty(3.0), prompt_vectors=True)
    answer = start(built)
    assert answer.route == "cloud" and cloud.asked == 1
    assert local.embedded == [] and answer.prompt_vector is None


@pytest.mark.parametrize(
    ("failure", "released"),
    [
        (QueueFullError(depth=5, retry_after=2.0), 0),
        (ModelNotReadyError("loading"), 0),
        (GenerationError("llama.cpp failed"), 1),
    ],
)
def test_a_vector_that_cannot_be_read_for_learning_changes_nothing(
    failure: HybridError, released: int
) -> None:
    local = VectorLocal(fail=failure)
    built, cloud = dispatcher(local, difficulty(-3.0), prompt_vectors=True)
    answer = start(built)
    assert (answer.route, answer.reason) == ("local", "difficulty:0.05<=0.50")
    assert len(local.embedded) == 1 and cloud.asked == 0
    assert answer.prompt_vector is None and local.released == released


def test_no_vector_is_read_for_learning_while_every_slot_is_busy() -> None:
    local = VectorLocal(EASY)
    local.queue = SimpleNamespace(depth=1, slots=1, running=1, expected_wait_s=lambda: 0.8)
    built, _ = dispatcher(local, difficulty(-3.0), prompt_vectors=True)
    answer = start(built)
    assert answer.route == "local" and answer.prompt_vector is None
    assert local.embedded == [] and len(local.started) == 1


def test_no_vector_is_read_for_learning_from_another_models_probe() -> None:
    local = VectorLocal()
    local.embedding_size = 640
    built, _ = dispatcher(local, difficulty(-3.0), prompt_vectors=True)
    answer = start(built)
    assert local.embedded == [] and answer.route == "local" and answer.prompt_vector is None


def test_a_probe_fitted_for_another_model_is_not_asked() -> None:
    local = VectorLocal()
    local.embedding_size = 640
    built, _ = dispatcher(local, difficulty(UNSURE))
    answer = start(built)
    assert local.embedded == []
    assert answer.reason == "difficulty:0.60>0.50~probe_unavailable:mismatch"


@pytest.mark.parametrize(
    ("case", "kwargs"),
    [
        ("named local model", {"model": "local"}),
        ("header cloud", {"override": "cloud"}),
        ("header local", {"override": "local"}),
    ],
)
def test_a_route_the_client_fixed_never_asks_the_probe(case: str, kwargs: dict[str, Any]) -> None:
    local = VectorLocal()
    built, _ = dispatcher(local, difficulty(UNSURE))
    start(built, **kwargs)
    assert local.embedded == [], case


@pytest.mark.parametrize("mode", ["local-only", "cloud-only"])
def test_a_server_wide_mode_never_asks_the_probe(mode: Mode) -> None:
    local = VectorLocal()
    built, _ = dispatcher(local, difficulty(UNSURE), mode=mode)
    start(built)
    assert local.embedded == []


def test_other_policies_stay_ahead_and_unchanged() -> None:
    local = VectorLocal(EASY)
    built, _ = dispatcher(local, difficulty(UNSURE))
    private = start(built, ask("Mail jane.doe@example.com the quarterly numbers."))
    assert private.route == "local" and private.reason.startswith("privacy:")
    images = start(built, ask("What is in this picture?", needs=frozenset({"images"})))
    assert images.route == "cloud" and images.reason.startswith("capability:")
    long = start(built, ask(params=SamplingParams(max_tokens=9000)))
    assert long.route == "cloud" and long.reason.startswith("length:")
    assert local.embedded == []


def test_no_probe_switched_off_or_no_cloud_means_no_model_stage() -> None:
    cases: list[tuple[DifficultyModel, dict[str, bool]]] = [
        (difficulty(UNSURE, probe=False), {}),
        (difficulty(UNSURE), {"model_stage": False}),
        (difficulty(UNSURE), {"cloud": False}),
    ]
    for model, options in cases:
        local = VectorLocal()
        built, _ = dispatcher(local, model, **options)
        answer = start(built)
        assert local.embedded == [] and "probe" not in answer.reason, options


def test_lan_servers_without_a_cloud_are_enough_for_the_model_stage_to_be_asked() -> None:
    base = f"http://127.0.0.1:{closed_port()}/v1"  # planned only: nothing is sent
    servers = [{"name": "gpu-box", "base_url": base, "models": ["qwen2.5-32b-instruct"]}]
    lan = LanTier(LanPool(LanSettings(servers=servers), LAN_POLICY))  # type: ignore[arg-type]
    local = VectorLocal(HARD)
    built, _ = dispatcher(local, difficulty(UNSURE), cloud=False, lan=lan)

    async def planned() -> Any:
        try:
            return await built.plan(ask(), model="hybrid")
        finally:
            await lan.pool.aclose()

    plan = asyncio.run(planned())
    assert plan.decision.target == "cloud" and stage_of(plan.decision) == "model"
    assert plan.decision.reason.startswith("difficulty:0.60~probe:0.88>")
    assert len(local.embedded) == 1


def every_score(feature: float, probe: float) -> float:
    return 0.25 * feature + 0.75 * probe


def test_asked_for_every_request_the_model_stage_settles_clear_cases_too() -> None:
    # The feature stage alone keeps it local (0.05, far below its band); the probe finds it
    # hard (0.88), and their average at the runtime's weight is above every_threshold.
    local = VectorLocal(HARD)
    built, cloud = dispatcher(local, difficulty(-3.0), model_stage="every")
    answer = start(built)
    feature = 1 / (1 + np.exp(3.0))
    score = every_score(feature, 1 / (1 + np.exp(-2.0)))
    assert (answer.route, answer.reason) == ("cloud", f"difficulty:0.05~probe:{score:.2f}>0.50")
    assert answer.score == pytest.approx(score) and cloud.asked == 1
    assert len(local.embedded) == 1 and local.released == 1
    assert answer.prompt_vector is HARD
    assert stage_of(asyncio.run(built.plan(ask(), model="hybrid")).decision) == "model"
    # A prompt the probe finds easy stays local on the prompt it evaluated, even one the
    # feature stage alone sends out (0.95).
    easy = VectorLocal(EASY)
    built, cloud = dispatcher(easy, difficulty(3.0), model_stage="every")
    answer = start(built)
    assert answer.route == "local" and cloud.asked == 0
    assert answer.reason.startswith("difficulty:0.95~probe:") and answer.reason.endswith("<=0.50")
    assert easy.started == easy.embedded and easy.released == 0


def test_asked_for_every_request_the_probe_reads_each_score_beside_recent_like_prompts() -> None:
    local = VectorLocal(np.array([2.0, 0.0, 0.0, 0.0]))
    built, _ = dispatcher(local, difficulty(-3.0), model_stage="every")
    feature = 1 / (1 + np.exp(3.0))
    first = start(built)
    hard = 1 / (1 + np.exp(-2.0))
    assert first.score == pytest.approx(every_score(feature, hard))  # nothing recent: alone
    # Like the first (cosine 0.45 of the standardised vectors): read beside it.
    local.vector = np.array([0.5, 1.0, 0.0, 0.0])
    second = start(built)
    own = 1 / (1 + np.exp(-0.5))
    assert second.score == pytest.approx(every_score(feature, 0.2 * own + 0.8 * hard))
    # Unlike both (cosine 0): alone.
    local.vector = np.array([0.0, 0.0, 1.0, 0.0])
    third = start(built)
    assert third.score == pytest.approx(every_score(feature, 0.5))


def test_asked_for_every_request_the_model_stage_never_waits_for_a_slot() -> None:
    local = VectorLocal(HARD)
    local.queue = SimpleNamespace(depth=1, slots=1, running=1, expected_wait_s=lambda: 0.8)
    built, cloud = dispatcher(local, difficulty(-3.0), model_stage="every")
    answer = start(built)
    assert local.embedded == []
    assert answer.reason == "difficulty:0.05<=0.50~probe_unavailable:busy"
    assert answer.route == "local" and len(local.started) == 1 and cloud.asked == 0


def test_a_probe_fitted_without_the_every_threshold_is_asked_in_its_band(
    caplog: pytest.LogCaptureFixture,
) -> None:
    built, _ = dispatcher(
        VectorLocal(HARD), difficulty(-3.0, every_threshold=None), model_stage="every"
    )
    with caplog.at_level("WARNING", logger="hybrid.routing"):
        clear = start(built)
        start(built)
    assert clear.reason == "difficulty:0.05<=0.50"
    warnings = [r.getMessage() for r in caplog.records if "every" in r.getMessage()]
    assert len(warnings) == 1 and "run `hybrid calibrate`" in warnings[0]
    local = VectorLocal(HARD)
    in_band, _ = dispatcher(local, difficulty(-UNSURE, every_threshold=None), model_stage="every")
    assert start(in_band).reason == "difficulty:0.40~probe:0.88>0.50"


def test_a_user_threshold_moves_the_every_threshold_by_the_same_step() -> None:
    # From the fitted 0.50 to 0.90: every_threshold, fitted at 0.50, moves to 0.90 too.
    local = VectorLocal(HARD)
    built, cloud = dispatcher(local, difficulty(-3.0), model_stage="every", threshold=0.9)
    answer = start(built)
    assert answer.route == "local" and cloud.asked == 0
    assert answer.reason.endswith("<=0.90")


def test_hybrid_route_shows_the_stage_that_decided() -> None:
    built, _ = dispatcher(VectorLocal(HARD), difficulty(-UNSURE))
    plan = asyncio.run(built.plan(ask(), model="hybrid"))
    out = io.StringIO()
    route_cmd._print_plan(plan, out)
    text = out.getvalue()
    assert "reason:  difficulty:0.40~probe:0.88>0.50" in text
    assert "stage:   model (the local model's view" in text
    assert "  probe       cloud  probe:0.88>0.50" in text
    document = route_cmd._plan_json(plan, verdicts=True)
    assert json.loads(json.dumps(document))["stage"] == "model"
    # JSON lines keep their three keys.
    assert set(route_cmd._plan_json(plan, verdicts=False)) == {"target", "score", "reasons"}
    clear, _ = dispatcher(VectorLocal(), difficulty(-3.0))
    plain = route_cmd._plan_json(asyncio.run(clear.plan(ask(), model="hybrid")), verdicts=True)
    assert plain["stage"] == "feature"


def test_hybrid_route_says_why_the_model_stage_is_not_asked_without_a_cloud() -> None:
    local = VectorLocal(HARD)
    built, _ = dispatcher(local, difficulty(UNSURE), cloud=False)
    plan = asyncio.run(built.plan(ask(), model="hybrid"))
    out = io.StringIO()
    route_cmd._print_plan(plan, out)
    text = out.getvalue()
    assert "reason:  local:no_cloud_configured; difficulty:0.60>0.50" in text
    assert "note:    no cloud is configured" in text and "model stage is not asked" in text
    assert local.embedded == []
    with_cloud, _ = dispatcher(VectorLocal(HARD), difficulty(UNSURE))
    out = io.StringIO()
    route_cmd._print_plan(asyncio.run(with_cloud.plan(ask(), model="hybrid")), out)
    assert "note:" not in out.getvalue()


def test_the_model_stage_moves_the_probes_score_of_a_prompt_offering_a_closed_set() -> None:
    # A yes-or-no prompt: each stage's score is halved (a guess is right one time in two).
    yes_no = ask("Is the derivative of x squared 2x? Answer yes or no.")
    # The feature stage's 0.80 halved is 0.40, in the band; the probe's 0.88 halved is 0.44.
    local = VectorLocal(HARD)
    built, cloud = dispatcher(local, difficulty(np.log(4.0)))
    answer = start(built, yes_no)
    probe = 0.5 / (1 + np.exp(-2.0))
    assert (answer.route, answer.reason) == (
        "local",
        f"difficulty(yes_no):0.40~probe:{probe:.2f}<=0.50",
    )
    assert answer.score == pytest.approx(probe) and cloud.asked == 0
    # Asked for every request, the probe's score read beside recent prompts is halved too.
    every = VectorLocal(HARD)
    built, _ = dispatcher(every, difficulty(np.log(4.0)), model_stage="every")
    answer = start(built, yes_no)
    assert answer.score == pytest.approx(every_score(0.4, probe))
