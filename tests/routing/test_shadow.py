"""Shadow sampling: the comparisons run against the fake cloud (sampling, spend caps, failures,
the judge) and the local model answering again in the background."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from random import Random
from typing import Any

import numpy as np
import pytest
from fake_cloud import FakeCloud, Fault
from scripted import ScriptedBackend

from hybrid.errors import GenerationError, ModelNotReadyError, PreemptedError
from hybrid.generation import GenerationRequest, Message, SamplingParams
from hybrid.ledger.budget import Budget, SpendSeed
from hybrid.routing.agreement import Grade
from hybrid.routing.names import CloudTarget
from hybrid.routing.reserving import Reserving
from hybrid.routing.shadow import (
    LOCAL_MAX_TOKENS,
    LOCAL_PENDING,
    Sample,
    Shadowing,
    ShadowOutcome,
)
from hybrid.routing.shadow_meter import LocalShadowAnswer
from hybrid.service.providers import build_providers
from hybrid.settings import load_settings
from hybrid.settings.ledger import BudgetSettings

TARGET = CloudTarget("openai", "gpt-4.1-mini")
QUESTION = GenerationRequest("r1", messages=(Message("user", "What is the capital of France?"),))


@pytest.fixture
def cloud() -> Any:
    with FakeCloud(reply="The capital of France is Paris.") as fake:
        yield fake


def capped_budget() -> Reserving:
    """A budget whose daily cap of 0 is reached."""
    budget = Budget(BudgetSettings(daily_usd=0.0), SpendSeed(at=time.time()))
    return Reserving(lambda: budget, lambda model, prompt, output: 0.0, len)


def shadowing_for(cloud: FakeCloud, tmp_path: Path, **options: Any) -> tuple[Shadowing, Any]:
    settings = load_settings(
        environ={"HYBRID_HOME": str(tmp_path)},
        dotenv_file=None,
        cli={
            "cloud.openai.api_key": cloud.openai_key,
            "cloud.openai.base_url": cloud.base_url + "/v1",
        },
    ).settings
    pool = build_providers(settings.cloud)
    defaults: dict[str, Any] = {
        "rate": 1.0,
        "providers": pool.providers,
        "usable": lambda provider: True,
        "budget": None,
        "agreement": 0.5,
        "rng": Random(0),
    }
    return Shadowing(**(defaults | options)), pool


def compare(
    shadowing: Shadowing,
    pool: Any,
    text: str,
    request: GenerationRequest = QUESTION,
    *,
    answered_by: str = "local",
) -> tuple[bool, list[ShadowOutcome]]:
    """Offer an answer (``text``, given by the local model or the cloud) and wait for the
    comparison to end."""
    offer = shadowing.offer if answered_by == "local" else shadowing.offer_local

    async def run() -> tuple[bool, list[ShadowOutcome]]:
        outcomes: list[ShadowOutcome] = []
        try:
            started = offer(request, text, TARGET, outcomes.append)
            await shadowing.drain()
        finally:
            await pool.aclose()
        return started, outcomes

    return asyncio.run(run())


def test_a_local_answer_is_compared_with_the_cloud_answer(cloud: FakeCloud, tmp_path: Path) -> None:
    shadowing, pool = shadowing_for(cloud, tmp_path)
    started, [outcome] = compare(shadowing, pool, "Paris")
    assert started and outcome.grade == Grade(True, 1.0, "match")
    assert outcome.shadow.text == cloud.reply and outcome.shadow.usage is not None
    assert outcome.judge is None
    [sent] = cloud.requests
    assert sent.body is not None and sent.body["model"] == "gpt-4.1-mini"


def test_a_local_answer_that_repeats_the_question_does_not_agree(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    # The cloud's "The capital of France is Paris." shares four words of five with it.
    shadowing, pool = shadowing_for(cloud, tmp_path)
    _, [outcome] = compare(shadowing, pool, "The capital of France is a city.")
    assert outcome.grade is not None and not outcome.grade.good


@pytest.mark.parametrize(
    "options",
    [{"rate": 0.0}, {"budget": capped_budget()}, {"usable": lambda p: False}],
)
def test_nothing_is_sent_when_off_capped_or_without_a_key(
    cloud: FakeCloud, tmp_path: Path, options: dict[str, Any]
) -> None:
    shadowing, pool = shadowing_for(cloud, tmp_path, **options)
    started, outcomes = compare(shadowing, pool, "Paris")
    assert (started, outcomes, cloud.requests) == (False, [], [])


def test_requests_needing_tools_or_images_are_not_shadowed(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    shadowing, pool = shadowing_for(cloud, tmp_path)
    request = GenerationRequest("r2", messages=QUESTION.messages, needs=frozenset({"images"}))
    assert compare(shadowing, pool, "Paris", request) == (False, [])


@pytest.mark.parametrize("rate", [0.1, 0.25, 0.3, 1.0])
def test_a_sample_takes_one_in_each_run_of_one_over_the_rate(rate: float) -> None:
    for seed in range(5):
        sample = Sample(rate, Random(seed))
        taken = [n for n in range(1000) if sample.draw()]
        assert len(taken) == round(1000 * rate)
        # Take k is the offer whose stretch [n * rate, (n + 1) * rate) meets [k, k + 1).
        for k, n in enumerate(taken):
            assert n * rate < k + 1 and (n + 1) * rate > k
        if rate == 0.1:
            assert [n // 10 for n in taken] == list(range(100))


def test_a_sample_places_its_takes_at_random_and_never_at_rate_zero() -> None:
    firsts = set()
    for seed in range(20):
        sample = Sample(0.1, Random(seed))
        firsts.add(next(n for n in itertools.count() if sample.draw()))
    assert firsts <= set(range(10)) and len(firsts) >= 4
    none = Sample(0.0, Random(0))
    assert not any(none.draw() for _ in range(1000))


def test_the_rate_samples_that_share(cloud: FakeCloud, tmp_path: Path) -> None:
    shadowing, pool = shadowing_for(cloud, tmp_path, rate=0.25, rng=Random(7))

    async def offer_many() -> int:
        try:
            started = sum(
                shadowing.offer(QUESTION, "Paris", TARGET, lambda o: None) for _ in range(400)
            )
            await shadowing.drain()
        finally:
            await pool.aclose()
        return started

    started = asyncio.run(offer_many())
    assert 70 <= started <= 130 and len(cloud.requests) == started


def test_a_failed_cloud_call_is_reported_without_a_grade(cloud: FakeCloud, tmp_path: Path) -> None:
    cloud.push(Fault.wrong_key())
    shadowing, pool = shadowing_for(cloud, tmp_path)
    _, [outcome] = compare(shadowing, pool, "Paris")
    assert outcome.grade is None and outcome.shadow.error is not None


@pytest.mark.parametrize(
    ("reply", "asked"),
    [
        # A content filter, or a model that answered with nothing.
        ("", QUESTION),
        # A reasoning model that spent max_tokens before writing anything ("length", no text).
        (
            "The capital of France is Paris.",
            GenerationRequest("r3", QUESTION.messages, params=SamplingParams(max_tokens=0)),
        ),
    ],
)
def test_an_empty_cloud_answer_is_reported_without_a_grade(
    cloud: FakeCloud, tmp_path: Path, reply: str, asked: GenerationRequest
) -> None:
    cloud.reply = reply
    shadowing, pool = shadowing_for(cloud, tmp_path)
    started, [outcome] = compare(shadowing, pool, "Paris.", asked)
    # The correct local answer is not labelled bad; the call is still reported, for its cost.
    assert started and outcome.grade is None
    assert outcome.shadow is not None and outcome.shadow.error is None
    assert outcome.shadow.text == "" and outcome.shadow.usage is not None
    assert len(cloud.requests) == 1


def test_a_judge_decides_and_an_unreadable_verdict_falls_back_to_overlap(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    judge = CloudTarget("openai", "gpt-4.1")
    cloud.replies = {"Reply with one word": "No."}
    shadowing, pool = shadowing_for(cloud, tmp_path, judge=judge)
    _, [outcome] = compare(shadowing, pool, "Paris")
    assert outcome.grade == Grade(False, 0.0, "judge")
    assert outcome.judge is not None and outcome.judge.target == judge

    cloud.replies = {"Reply with one word": "I cannot tell."}
    shadowing, pool = shadowing_for(cloud, tmp_path, judge=judge)
    _, [outcome] = compare(shadowing, pool, "Paris")
    assert outcome.grade == Grade(True, 1.0, "match")


def test_an_escalated_request_is_answered_locally_again_and_graded_without_a_cloud_call(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    local = ScriptedBackend()
    local.pieces = ["Paris", "."]
    asked = GenerationRequest(
        "r1", messages=QUESTION.messages, params=SamplingParams(max_tokens=4096), stream=True
    )
    shadowing, pool = shadowing_for(cloud, tmp_path, rate=0.0, local_rate=1.0, local=lambda: local)

    started, [outcome] = compare(
        shadowing, pool, "The capital of France is Paris.", asked, answered_by="cloud"
    )

    assert started and cloud.requests == []
    assert outcome.shadow is None and outcome.judge is None and outcome.against == TARGET
    assert outcome.grade == Grade(True, 1.0, "match")
    assert outcome.note == "match: a local answer in the background against openai/gpt-4.1-mini"
    [sent] = local.requests
    assert sent.messages == QUESTION.messages and not sent.stream
    assert sent.params.max_tokens == LOCAL_MAX_TOKENS
    local.pieces = ["Lyon"]
    shadowing, pool = shadowing_for(cloud, tmp_path, local_rate=1.0, local=lambda: local)
    _, [wrong] = compare(shadowing, pool, "The capital of France is Paris.", answered_by="cloud")
    assert wrong.grade is not None and not wrong.grade.good


def test_no_local_shadow_when_off_not_ready_or_needing_more_than_text(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    local = ScriptedBackend()

    def not_ready() -> ScriptedBackend:
        raise ModelNotReadyError("the local model is still loading")

    for options in ({"local_rate": 0.0, "local": lambda: local}, {"local_rate": 1.0}):
        shadowing, pool = shadowing_for(cloud, tmp_path, **options)
        assert compare(shadowing, pool, "Paris", answered_by="cloud") == (False, [])
    shadowing, pool = shadowing_for(cloud, tmp_path, local_rate=1.0, local=lambda: local)
    images = GenerationRequest("r2", messages=QUESTION.messages, needs=frozenset({"images"}))
    assert compare(shadowing, pool, "Paris", images, answered_by="cloud") == (False, [])
    shadowing, pool = shadowing_for(cloud, tmp_path, local_rate=1.0, local=not_ready)
    assert compare(shadowing, pool, "Paris", answered_by="cloud") == (True, [])
    assert local.requests == [] and cloud.requests == []


def test_no_local_shadow_answer_starts_while_background_work_is_held(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    local = ScriptedBackend()
    local.pieces = ["Paris"]
    held: list[str | None] = ["on battery power"]
    shadowing, pool = shadowing_for(
        cloud, tmp_path, local_rate=1.0, local=lambda: local, held=lambda: held[0]
    )
    assert compare(shadowing, pool, "Paris", answered_by="cloud") == (False, [])
    assert local.requests == []
    held[0] = None  # plugged in
    shadowing, pool = shadowing_for(
        cloud, tmp_path, local_rate=1.0, local=lambda: local, held=lambda: held[0]
    )
    started, [outcome] = compare(shadowing, pool, "Paris", answered_by="cloud")
    assert started and outcome.grade is not None and outcome.grade.good
    assert len(local.requests) == 1


def test_local_shadow_answers_wait_two_at_most(cloud: FakeCloud, tmp_path: Path) -> None:
    local = ScriptedBackend()
    local.pieces = ["Paris"]
    shadowing, pool = shadowing_for(cloud, tmp_path, local_rate=1.0, local=lambda: local)

    async def offer_many() -> tuple[list[bool], bool, int]:
        outcomes: list[ShadowOutcome] = []
        try:
            started = [
                shadowing.offer_local(QUESTION, "Paris", TARGET, outcomes.append) for _ in range(4)
            ]
            await shadowing.drain()
            again = shadowing.offer_local(QUESTION, "Paris", TARGET, outcomes.append)
            await shadowing.drain()
        finally:
            await pool.aclose()
        return started, again, len(outcomes)

    started, again, reported = asyncio.run(offer_many())
    assert started == [True, True, False, False] == [i < LOCAL_PENDING for i in range(4)]
    assert again and reported == 3 and len(local.requests) == 3


def test_the_local_sample_counts_only_the_requests_a_local_answer_could_be_given_for(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    local = ScriptedBackend()
    local.pieces = ["Paris"]
    held: list[str | None] = [None]
    options = {"rate": 0.0, "local_rate": 0.5, "local": lambda: local, "held": lambda: held[0]}
    shadowing, pool = shadowing_for(cloud, tmp_path, **options)
    images = GenerationRequest("r2", messages=QUESTION.messages, needs=frozenset({"images"}))
    # The local sample's draws when cloud shadowing is off: the same seed, counting only the
    # requests offered below that could be answered.
    expected = Sample(0.5, Random(0))

    async def offer_many() -> list[bool]:
        outcomes: list[ShadowOutcome] = []

        def offer(request: GenerationRequest = QUESTION, text: str = "Paris") -> bool:
            return shadowing.offer_local(request, text, TARGET, outcomes.append)

        taken, waiting = [], 0
        try:
            for _ in range(12):
                # On battery power, needing images, or with an empty cloud answer: neither
                # answered nor counted.
                held[0] = "on battery power"
                assert not offer()
                held[0] = None
                assert not offer(images) and not offer(text=" ")
                taken.append(offer())
                waiting += taken[-1]
                if waiting == LOCAL_PENDING:
                    assert not offer()  # two wait already: not counted either
                    await shadowing.drain()
                    waiting = 0
            await shadowing.drain()
        finally:
            await pool.aclose()
        return taken

    taken = asyncio.run(offer_many())
    assert taken == [expected.draw() for _ in range(12)]
    assert 0 < sum(taken) < 12 and len(local.requests) == sum(taken)


def test_a_local_shadow_answer_reads_the_prompt_vector_from_the_prefill_it_answers_from(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    local = ScriptedBackend()
    local.pieces = ["Paris"]
    local.embedding = np.array([0.5, -1.0, 2.0, 0.25], dtype=np.float32)
    options = {"local_rate": 1.0, "local": lambda: local, "vectors": True}
    shadowing, pool = shadowing_for(cloud, tmp_path, **options)

    _, [outcome] = compare(shadowing, pool, "Paris", answered_by="cloud")

    assert outcome.vector is not None and np.array_equal(outcome.vector, local.embedding)
    [embedded], [answered] = local.embedded, local.requests
    assert embedded == answered and outcome.grade == Grade(True, 1.0, "match")
    # A vector that cannot be read leaves the grade standing.
    local.fail_on_embed = GenerationError("llama.cpp gave no hidden state")
    shadowing, pool = shadowing_for(cloud, tmp_path, **options)
    _, [graded] = compare(shadowing, pool, "Paris", answered_by="cloud")
    assert graded.vector is None and graded.grade == Grade(True, 1.0, "match")
    # Off (the default), no vector is read.
    shadowing, pool = shadowing_for(cloud, tmp_path, local_rate=1.0, local=lambda: local)
    _, [plain] = compare(shadowing, pool, "Paris", answered_by="cloud")
    assert plain.vector is None and len(local.embedded) == 2


class Machine:
    """A fake machine's clock, process CPU time and GPUs' energy counter: they move only as
    work uses the machine."""

    def __init__(self) -> None:
        self.seconds = self.cpu_s = self.joules = 0.0

    def use(self, seconds: float, cpu_s: float, joules: float) -> None:
        self.seconds += seconds
        self.cpu_s += cpu_s
        self.joules += joules

    def meters(self) -> dict[str, Any]:
        """The meters a :class:`Shadowing` reads."""
        return {
            "perf": lambda: self.seconds,
            "cpu": lambda: self.cpu_s,
            "gpu_energy": lambda: self.joules,
        }


# What client requests use of the machine (seconds, CPU seconds, joules) while a job of a local
# shadow answer waits for the low-priority lane, and again after it; what the job for its
# prompt's vector (the prefill) and the one for its answer use.
CLIENTS = (30.0, 24.0, 3000.0)
PREFILL = (1.0, 0.5, 50.0)
ANSWER = (4.0, 2.0, 200.0)


class BusyLane(ScriptedBackend):
    """The scripted local model on the low-priority lane of a busy machine: client requests
    use the machine while each job waits for the lane, and after it ends."""

    def __init__(self, machine: Machine) -> None:
        super().__init__()
        self.machine = machine

    def _job(self, running: Any, work: tuple[float, float, float]) -> Any:
        @contextlib.contextmanager
        def job() -> Iterator[None]:
            self.machine.use(*CLIENTS)  # waiting for the lane
            try:
                with running():
                    self.machine.use(*work)
                    yield
            finally:
                self.machine.use(*CLIENTS)  # the lane's next client requests

        return job

    async def prompt_embedding(
        self, request: GenerationRequest, *, prepared: Any = None, running: Any = None
    ) -> Any:
        job = self._job(running, PREFILL)
        return await super().prompt_embedding(request, prepared=prepared, running=job)

    async def start(
        self, request: GenerationRequest, *, prepared: Any = None, running: Any = None
    ) -> Any:
        job = self._job(running, ANSWER)
        return await super().start(request, prepared=prepared, running=job)


@pytest.mark.parametrize(
    ("vectors", "spent"),
    [(False, ANSWER), (True, tuple(a + b for a, b in zip(PREFILL, ANSWER, strict=True)))],
)
def test_a_local_shadow_answer_reports_what_the_local_model_spent_on_it(
    cloud: FakeCloud, tmp_path: Path, vectors: bool, spent: tuple[float, float, float]
) -> None:
    machine = Machine()
    local = BusyLane(machine)
    local.pieces = ["Paris", "."]
    shadowing, pool = shadowing_for(
        cloud, tmp_path, local_rate=1.0, local=lambda: local, vectors=vectors, **machine.meters()
    )
    _, [outcome] = compare(shadowing, pool, "Paris", answered_by="cloud")
    assert outcome.grade == Grade(True, 1.0, "match")
    # Only while the local model worked on it (the prefill its vector is read from, then its
    # answer): not while its jobs waited for the lane, nor once they ended, while client
    # requests used the machine.
    seconds, cpu_s, joules = spent
    assert outcome.local == LocalShadowAnswer(
        model="scripted-model",
        prompt_tokens=7,
        completion_tokens=2,
        latency_s=seconds,
        cpu_s=cpu_s,
        gpu_joules=joules,
    )
    assert machine.seconds > seconds  # the client requests' time was there to count


@pytest.mark.parametrize(
    ("stopped", "status", "error"),
    [
        # A client request needed the slot: stopped at its next token.
        (PreemptedError("a client request needed the local model"), "cancelled", None),
        (GenerationError("llama_decode returned -1"), "error", "llama_decode returned -1"),
    ],
)
def test_a_local_shadow_answer_stopped_early_is_reported_with_what_it_generated(
    cloud: FakeCloud,
    tmp_path: Path,
    stopped: Exception,
    status: str,
    error: str | None,
) -> None:
    machine = Machine()
    local = BusyLane(machine)
    local.pieces = ["Paris", " is", " the"]
    local.fail_mid_stream = stopped  # type: ignore[assignment]
    shadowing, pool = shadowing_for(
        cloud, tmp_path, local_rate=1.0, local=lambda: local, **machine.meters()
    )
    started, [outcome] = compare(shadowing, pool, "Paris", answered_by="cloud")
    # No grade (nor label) from half an answer, but its cost is reported.
    assert started and outcome.grade is None and outcome.against == TARGET
    assert outcome.local == LocalShadowAnswer(
        model="scripted-model",
        prompt_tokens=7,  # the prepared prompt's
        completion_tokens=3,  # a piece per token, counted as they came
        latency_s=4.0,  # until it stopped, not the client requests' time after
        cpu_s=2.0,
        gpu_joules=200.0,
        status=status,  # type: ignore[arg-type]
        error=error,
        estimated=True,
    )


def test_a_local_shadow_answer_that_cannot_grade_is_reported_for_its_cost(
    cloud: FakeCloud, tmp_path: Path
) -> None:
    local = ScriptedBackend()
    local.pieces = [" "]
    shadowing, pool = shadowing_for(cloud, tmp_path, local_rate=1.0, local=lambda: local)
    _, [outcome] = compare(shadowing, pool, "Paris", answered_by="cloud")
    assert outcome.grade is None and outcome.local is not None
    assert (outcome.local.status, outcome.local.completion_tokens) == ("ok", 1)
    # Without an energy counter, the GPU's energy is unknown.
    assert outcome.local.gpu_joules is None
