"""The LAN tier in the dispatcher: team servers before the cloud, by load, with failover.

The servers are real HTTP servers on loopback (`FakeCloud` speaking OpenAI's wire format),
reached through the real `LanPool` and `LanProvider`; the local model and the cloud are the
dispatcher tests' scripted fakes.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import httpx2
import pytest
from fake_cloud import FakeCloud, Fault, closed_port
from routing_fakes import BIG, LAN_POLICY, CascadingLocal, FakeLocal, FakeProvider

from hybrid.backend import collect
from hybrid.cli import route as route_cmd
from hybrid.errors import InvalidRequestError, NoRouteError, PrivateDataError, QueueFullError
from hybrid.generation import GenerationRequest, Message, SamplingParams
from hybrid.lan.pool import LanPool
from hybrid.lan.provider import LanProvider
from hybrid.routing.answer import Answer
from hybrid.routing.cascade import Cascade
from hybrid.routing.chain import build_router
from hybrid.routing.dispatcher import Dispatcher
from hybrid.routing.lan import LanTier
from hybrid.routing.names import ModelNames, ProviderModels
from hybrid.settings.lan import LanSettings
from hybrid.settings.routing import RoutingSettings

REQUEST = GenerationRequest("r1", messages=(Message("user", "What is the capital of France?"),))
EMAIL = GenerationRequest(
    "r2", messages=(Message("user", "Write to jane.doe@example.com about the meeting."),)
)


def server(name: str, cloud: FakeCloud | None, **extra: Any) -> dict[str, Any]:
    base = f"{cloud.base_url}/v1" if cloud is not None else f"http://127.0.0.1:{closed_port()}/v1"
    key = cloud.openai_key if cloud is not None else "sk-none"
    return {"name": name, "base_url": base, "api_key": key, "models": [BIG], **extra}


def lan_tier(*servers: dict[str, Any], **settings: Any) -> LanTier:
    lan = LanSettings(servers=list(servers), **settings)
    return LanTier(LanPool(lan, LAN_POLICY))


def dispatcher(
    local: FakeLocal,
    lan: LanTier,
    *providers: FakeProvider,
    cloud: bool = True,
    allow_lan: bool = False,
    local_fallback: bool = True,
    cascade: Cascade | None = None,
) -> Dispatcher:
    names = ModelNames(
        [ProviderModels("openai", ("gpt-4.1-mini",), usable=cloud)],
        None,
    )
    return Dispatcher(
        local,
        {p.name: p for p in providers},  # type: ignore[misc]
        names,
        router=build_router(RoutingSettings()),
        lan=lan,
        private_to_lan=allow_lan,
        local_fallback=local_fallback,
        cascade=cascade,
    )


def busy() -> FakeLocal:
    return FakeLocal(QueueFullError(depth=4, retry_after=2))


async def answered(dispatch: Dispatcher, request: GenerationRequest = REQUEST) -> Answer:
    return await dispatch.start(request, model="hybrid")


async def text(answer: Answer) -> str:
    return (await collect(answer.generation)).text


def test_a_request_the_device_cannot_take_goes_to_a_lan_server_before_the_cloud(
    boxes: tuple[FakeCloud, FakeCloud],
) -> None:
    a, _ = boxes
    lan = lan_tier(server("gpu-box", a))
    openai = FakeProvider("openai")

    async def scenario() -> Answer:
        answer = await answered(dispatcher(busy(), lan, openai))
        assert await text(answer) == "from a"
        await lan.pool.aclose()
        return answer

    answer = asyncio.run(scenario())
    assert (answer.route, answer.model) == ("lan", f"gpu-box/{BIG}")
    assert answer.reason == f"lan:gpu-box/{BIG};capacity:queue_full:4"
    assert answer.counterfactual == "openai/gpt-4.1-mini"
    assert openai.models_asked == []
    assert [r.body["model"] for r in a.requests] == [BIG]


def test_the_least_loaded_server_is_asked_first(boxes: tuple[FakeCloud, FakeCloud]) -> None:
    a, b = boxes
    lan = lan_tier(server("a", a), server("b", b))

    async def scenario() -> list[str]:
        dispatch = dispatcher(busy(), lan, FakeProvider("openai"))
        first = await answered(dispatch)  # held open: one in flight on a
        second = await answered(dispatch)
        await text(first)
        third = await answered(dispatch)  # a is free again
        models = [first.model, second.model, third.model]
        for answer in (second, third):
            await text(answer)
        assert [s.in_flight for s in lan.pool.servers] == [0, 0]
        await lan.pool.aclose()
        return models

    assert asyncio.run(scenario()) == [f"a/{BIG}", f"b/{BIG}", f"a/{BIG}"]


def test_a_server_reporting_a_queue_is_passed_over_for_an_idle_one(
    boxes: tuple[FakeCloud, FakeCloud],
) -> None:
    a, b = boxes
    lan = lan_tier(server("a", a), server("b", b))
    from hybrid.lan.reports import ServerLoad

    async def scenario() -> str:
        busy_a = lan.pool.servers[0]
        # a's own report: 4 of 4 slots busy, 2 queued (another client's requests).
        busy_a.load = ServerLoad(4, 2, 4, 0, "llama-server /slots+/metrics", None, 1e18)
        answer = await answered(dispatcher(busy(), lan, FakeProvider("openai")))
        await text(answer)
        await lan.pool.aclose()
        return answer.model

    assert asyncio.run(scenario()) == f"b/{BIG}"


def test_round_robin_takes_each_server_in_turn(boxes: tuple[FakeCloud, FakeCloud]) -> None:
    a, b = boxes
    lan = lan_tier(server("a", a), server("b", b), strategy="round_robin")

    async def scenario() -> list[str]:
        dispatch = dispatcher(busy(), lan, FakeProvider("openai"))
        models = []
        for _ in range(4):
            answer = await answered(dispatch)
            await text(answer)
            models.append(answer.model.split("/")[0])
        await lan.pool.aclose()
        return models

    assert asyncio.run(scenario()) == ["a", "b", "a", "b"]


def test_a_server_that_is_down_is_failed_over_and_then_skipped(
    boxes: tuple[FakeCloud, FakeCloud],
) -> None:
    _, b = boxes
    lan = lan_tier(server("dead", None), server("b", b))

    async def scenario() -> list[Answer]:
        dispatch = dispatcher(busy(), lan, FakeProvider("openai"))
        answers = [await answered(dispatch), await answered(dispatch)]
        for answer in answers:
            await text(answer)
        assert lan.pool.to_json()[0]["up"] is False
        await lan.pool.aclose()
        return answers

    first, second = asyncio.run(scenario())
    assert first.model == second.model == f"b/{BIG}"
    assert first.reason.endswith(";failover:lan:dead:unavailable")
    assert second.reason == f"lan:b/{BIG};capacity:queue_full:4"  # dead was not tried again


def failing_with(lan: LanTier, exc: httpx2.HTTPError) -> httpx2.AsyncClient:
    """Make the first server's every request fail as httpx2 would with `exc`; returns the
    client to close."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        raise exc

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    server_ = lan.pool.servers[0]
    server_.provider = LanProvider(
        name=server_.name,
        base_url=server_.settings.base_url,
        api_key=server_.settings.api_key,
        models=server_.settings.models,
        client=client,
        policy=LAN_POLICY,
    )
    return client


@pytest.mark.parametrize(
    ("exc", "down"),
    [
        (httpx2.ConnectTimeout("timed out"), True),  # a host powered off: SYNs dropped
        (httpx2.ReadTimeout("timed out"), False),  # connected, the answer is slow
    ],
    ids=["connect_timeout", "read_timeout"],
)
def test_a_server_that_never_accepts_the_connection_is_marked_down_a_slow_one_is_not(
    boxes: tuple[FakeCloud, FakeCloud], exc: httpx2.HTTPError, down: bool
) -> None:
    _, b = boxes
    lan = lan_tier(server("gone", None), server("b", b))
    client = failing_with(lan, exc)

    async def scenario() -> tuple[Answer, list[str], str | None]:
        answer = await answered(dispatcher(busy(), lan, FakeProvider("openai")))
        assert await text(answer) == "from b"
        ranked, _ = lan.pool.ranked()
        error = lan.pool.to_json()[0]["error"]  # /health shows why a server is down
        await lan.pool.aclose()
        await client.aclose()
        return answer, [s.name for s in ranked], error

    answer, ranked, error = asyncio.run(scenario())
    assert answer.reason.endswith(";failover:lan:gone:timeout")
    if down:
        assert ranked == ["b"]
        assert error is not None and "connect timeout" in error
    else:
        assert ranked == ["gone", "b"]
        assert error is None


@pytest.mark.parametrize(
    ("fault", "code"),
    [(Fault.malformed(), "bad_response"), (Fault.status(503), "unavailable")],
)
def test_a_server_that_answers_badly_is_failed_over(
    boxes: tuple[FakeCloud, FakeCloud], fault: Fault, code: str
) -> None:
    a, b = boxes
    a.default_fault = fault
    lan = lan_tier(server("a", a), server("b", b))

    async def scenario() -> Answer:
        answer = await answered(dispatcher(busy(), lan, FakeProvider("openai")))
        assert await text(answer) == "from b"
        await lan.pool.aclose()
        return answer

    answer = asyncio.run(scenario())
    assert answer.model == f"b/{BIG}"
    assert answer.reason.endswith(f";failover:lan:a:{code}")


def test_when_every_lan_server_fails_the_cloud_answers_and_says_why(
    boxes: tuple[FakeCloud, FakeCloud],
) -> None:
    a, _ = boxes
    a.default_fault = Fault.status(500)
    lan = lan_tier(server("a", a))
    openai = FakeProvider("openai")

    async def scenario() -> Answer:
        answer = await answered(dispatcher(busy(), lan, openai))
        await lan.pool.aclose()
        return answer

    answer = asyncio.run(scenario())
    assert (answer.route, answer.model) == ("cloud", "openai/gpt-4.1-mini")
    assert answer.reason == "capacity:queue_full:4;lan:failed:a:unavailable"


def test_a_full_server_sends_the_request_to_the_cloud(boxes: tuple[FakeCloud, FakeCloud]) -> None:
    a, _ = boxes
    lan = lan_tier(server("a", a, max_concurrency=1))
    openai = FakeProvider("openai")

    async def scenario() -> list[Answer]:
        dispatch = dispatcher(busy(), lan, openai)
        held = await answered(dispatch)
        overflow = await answered(dispatch)
        await text(held)
        await lan.pool.aclose()
        return [held, overflow]

    held, overflow = asyncio.run(scenario())
    assert held.route == "lan"
    assert (overflow.route, overflow.reason) == ("cloud", "capacity:queue_full:4;lan:busy")


def test_a_lan_model_too_small_for_the_prompt_is_not_asked(
    boxes: tuple[FakeCloud, FakeCloud],
) -> None:
    a, _ = boxes
    lan = lan_tier(server("a", a, models=["gemma3:270m"]))
    hard = GenerationRequest(
        "hard",
        messages=(
            Message(
                "user",
                "Prove that there are infinitely many primes, then write a Python function "
                "that tests primality in O(sqrt n) time and explain its complexity.",
            ),
        ),
    )
    openai = FakeProvider("openai")

    async def scenario() -> Answer:
        answer = await answered(dispatcher(busy(), lan, openai), hard)
        await lan.pool.aclose()
        return answer

    answer = asyncio.run(scenario())
    assert answer.route == "cloud"
    assert answer.reason.endswith(";lan:no_model")
    assert a.requests == []


def test_without_a_cloud_a_lan_server_still_takes_what_the_device_cannot(
    boxes: tuple[FakeCloud, FakeCloud],
) -> None:
    a, _ = boxes
    lan = lan_tier(server("a", a))

    async def scenario() -> Answer:
        answer = await answered(dispatcher(busy(), lan, cloud=False))
        await text(answer)
        await lan.pool.aclose()
        return answer

    answer = asyncio.run(scenario())
    assert (answer.route, answer.counterfactual) == ("lan", None)


async def cascaded_without_cloud(local: FakeLocal, lan: LanTier) -> tuple[Answer, str]:
    """The answer to REQUEST and its text, with LAN servers, no cloud and the cascade on."""
    dispatch = dispatcher(local, lan, cloud=False, cascade=Cascade(0.5))
    answer = await answered(dispatch)
    said = await text(answer)
    await lan.pool.aclose()
    return answer, said


def test_without_a_cloud_the_cascade_sends_an_unsure_local_answer_to_a_lan_server(
    boxes: tuple[FakeCloud, FakeCloud],
) -> None:
    a, _ = boxes
    lan = lan_tier(server("a", a))
    local = CascadingLocal([0.2, 0.3, 0.9])

    answer, said = asyncio.run(cascaded_without_cloud(local, lan))
    assert (answer.route, answer.model, said) == ("lan", f"a/{BIG}", "from a")
    assert answer.reason == f"lan:a/{BIG};cascade:0.38<0.5"
    assert answer.discarded is not None and answer.discarded.reason == "cascade:0.38<0.5"
    assert len(local.asked) == 1 and local.asked[0].params.top_logprobs == 0


def test_without_a_cloud_a_discarded_answer_no_lan_server_takes_is_given_as_it_was_read() -> None:
    lan = lan_tier(server("down", None))
    local = CascadingLocal([0.2, 0.3, 0.9], "the local answer")

    answer, said = asyncio.run(cascaded_without_cloud(local, lan))
    assert (answer.route, said) == ("local", "the local answer")
    assert answer.reason.startswith("local:no_cloud_configured;cascade:0.38<0.5;lan:")
    # Read once, given as it was read: the local model did not answer it a second time.
    assert len(local.asked) == 1 and len(local.started_answers) == 1
    assert answer.discarded is not None and answer.discarded.replayed


def test_hybrid_route_says_the_cascade_reads_a_local_answer_for_the_lan_servers() -> None:
    lan = lan_tier(server("gpu-box", None))  # nothing is sent
    dispatch = dispatcher(FakeLocal(), lan, cloud=False, cascade=Cascade(0.5))

    async def scenario() -> Any:
        try:
            return await dispatch.plan(REQUEST, model="hybrid")
        finally:
            await lan.pool.aclose()

    plan = asyncio.run(scenario())
    assert plan.decision.target == "local" and dispatch.reads_answer(REQUEST, plan)
    out = io.StringIO()
    route_cmd._print_plan(plan, out, lan=route_cmd.lan_servers(dispatch), read=True)
    then = [line for line in out.getvalue().splitlines() if line.startswith("then:")]
    assert then == [
        "then:    routing.cascade reads the local answer first: declining, unsure or outside "
        "the options offered, it goes to LAN servers: gpu-box"
    ]


def test_without_a_cloud_or_a_lan_server_the_cascade_reads_nothing() -> None:
    local = CascadingLocal([0.2, 0.3, 0.9])
    dispatch = Dispatcher(
        local,
        {},
        ModelNames([ProviderModels("openai", ("gpt-4.1-mini",), usable=False)], None),
        router=build_router(RoutingSettings()),
        cascade=Cascade(0.5),
    )

    async def scenario() -> Answer:
        answer = await answered(dispatch)
        await text(answer)
        return answer

    answer = asyncio.run(scenario())
    assert answer.route == "local" and "cascade" not in answer.reason
    assert local.asked[0].params.top_logprobs is None


def test_private_data_goes_only_to_trusted_servers_and_only_when_allowed(
    boxes: tuple[FakeCloud, FakeCloud],
) -> None:
    a, b = boxes
    servers = (server("open", a), server("vault", b, privacy="trusted"))
    openai = FakeProvider("openai")

    async def scenario(allow: bool) -> Answer | PrivateDataError:
        lan = lan_tier(*servers)
        try:
            return await answered(dispatcher(busy(), lan, openai, allow_lan=allow), EMAIL)
        except PrivateDataError as exc:
            return exc
        finally:
            await lan.pool.aclose()

    refused = asyncio.run(scenario(False))
    assert isinstance(refused, PrivateDataError)
    assert "routing.privacy.allow_lan = true" in str(refused)
    answer = asyncio.run(scenario(True))
    assert isinstance(answer, Answer)
    assert (answer.route, answer.model) == ("lan", f"vault/{BIG}")
    assert answer.reason.startswith(f"lan:vault/{BIG};privacy:email")
    assert a.requests == [] and openai.models_asked == []


def test_a_private_request_with_no_trusted_server_is_refused(
    boxes: tuple[FakeCloud, FakeCloud],
) -> None:
    a, _ = boxes
    lan = lan_tier(server("open", a))

    async def scenario() -> None:
        try:
            with pytest.raises(
                PrivateDataError, match=r"trusted LAN servers \(lan:no_trusted_server\)"
            ):
                await answered(
                    dispatcher(busy(), lan, FakeProvider("openai"), allow_lan=True), EMAIL
                )
        finally:
            await lan.pool.aclose()

    asyncio.run(scenario())
    assert a.requests == []


STREAMED = GenerationRequest(
    "s1", messages=(Message("user", "What is the capital of France?"),), stream=True
)


@pytest.mark.parametrize(
    ("fault", "code"),
    [(Fault.reset(after_chunks=0), "unavailable"), (Fault.malformed(), "bad_response")],
)
def test_a_stream_cut_or_garbled_before_its_first_token_is_failed_over(
    boxes: tuple[FakeCloud, FakeCloud], fault: Fault, code: str
) -> None:
    a, b = boxes
    a.default_fault = fault
    lan = lan_tier(server("a", a), server("b", b))

    async def scenario() -> Answer:
        answer = await answered(dispatcher(busy(), lan, FakeProvider("openai")), STREAMED)
        assert await text(answer) == "from b"
        await lan.pool.aclose()
        return answer

    answer = asyncio.run(scenario())
    assert answer.model == f"b/{BIG}"
    assert answer.reason.endswith(f";failover:lan:a:{code}")


@pytest.mark.parametrize("request_", [REQUEST, STREAMED], ids=["whole", "streamed"])
def test_a_server_answering_with_another_model_is_failed_over(
    boxes: tuple[FakeCloud, FakeCloud], request_: GenerationRequest
) -> None:
    a, b = boxes
    a.default_fault = Fault.wrong_model("llama3.1:8b")
    lan = lan_tier(server("a", a), server("b", b))

    async def scenario() -> Answer:
        answer = await answered(dispatcher(busy(), lan, FakeProvider("openai")), request_)
        assert await text(answer) == "from b"
        await lan.pool.aclose()
        return answer

    answer = asyncio.run(scenario())
    assert answer.model == f"b/{BIG}"
    assert answer.reason.endswith(";failover:lan:a:wrong_model")
    assert len([r for r in a.requests if r.body is not None]) == 1  # not retried


NEW = "qwen2.5-72b-instruct"
"""The able model a LAN server is restarted with."""


def model_lists_read(cloud: FakeCloud) -> int:
    return len([r for r in cloud.requests if r.path == "/v1/models"])


def test_a_server_restarted_with_another_model_is_asked_for_the_model_it_lists_now(
    boxes: tuple[FakeCloud, FakeCloud],
) -> None:
    a, b = boxes
    lan = lan_tier({**server("a", a), "models": []}, server("b", b))  # a: what it lists

    async def scenario() -> list[Answer]:
        await lan.pool.start()
        a.models = (NEW,)  # restarted with another model, never refusing a connection
        a.fail("/v1/chat/completions", Fault.wrong_model(NEW))
        dispatch = dispatcher(busy(), lan, FakeProvider("openai"))
        first = await answered(dispatch)
        assert await text(first) == "from b"
        assert lan.pool.servers[0].models == (NEW,)
        a.fail("/v1/chat/completions", None)  # it now answers for the model asked for
        second = await answered(dispatch)
        assert await text(second) == "from a"
        await lan.pool.aclose()
        return [first, second]

    first, second = asyncio.run(scenario())
    assert first.reason.endswith(";failover:lan:a:wrong_model")
    assert second.model == f"a/{NEW}"
    assert [r.body["model"] for r in a.requests if r.body is not None] == [BIG, NEW]
    assert model_lists_read(a) == 2  # at start, and once after the wrong model


def test_a_configured_models_list_is_not_replaced_by_what_a_server_lists(
    boxes: tuple[FakeCloud, FakeCloud],
) -> None:
    a, b = boxes
    lan = lan_tier(server("a", a), server("b", b))  # a: models = [BIG], configured
    a.models = (NEW,)
    a.default_fault = Fault.wrong_model(NEW)

    async def scenario() -> list[Answer]:
        dispatch = dispatcher(busy(), lan, FakeProvider("openai"))
        answers = [await answered(dispatch), await answered(dispatch)]
        for answer in answers:
            assert await text(answer) == "from b"
        await lan.pool.aclose()
        return answers

    for answer in asyncio.run(scenario()):
        assert answer.reason.endswith(";failover:lan:a:wrong_model")
    assert lan.pool.servers[0].models == (BIG,)
    assert model_lists_read(a) == 0


def test_the_load_a_llama_server_reports_steers_requests_to_the_idle_one() -> None:
    with (
        FakeCloud(reply="from a", models=(BIG,), lan_kind="llama-server") as a,
        FakeCloud(reply="from b", models=(BIG,), lan_kind="llama-server") as b,
    ):
        a.running, a.waiting = 4, 8  # another team's requests: every slot busy, 8 queued
        lan = lan_tier(server("a", a), server("b", b))

        async def scenario() -> tuple[str, dict[str, Any]]:
            await lan.pool.start()  # health and the first load reports
            answer = await answered(dispatcher(busy(), lan, FakeProvider("openai")))
            await text(answer)
            shown = lan.pool.to_json()[0]
            await lan.pool.aclose()
            return answer.model, shown

        model, shown = asyncio.run(scenario())
    assert model == f"b/{BIG}"
    assert shown["load"]["running"] == 4 and shown["load"]["waiting"] == 8
    assert shown["load_endpoint"].endswith("/slots")
    assert shown["utilisation"] >= 2.0


def test_hybrid_route_shows_the_lan_servers_a_request_off_the_machine_is_offered_first() -> None:
    lan = lan_tier(server("gpu-box", None), server("mac-mini", None))  # nothing is sent
    dispatch = dispatcher(FakeLocal(), lan, cloud=False)
    long_answer = GenerationRequest(
        "r3", messages=REQUEST.messages, params=SamplingParams(max_tokens=9000)
    )

    async def scenario() -> tuple[Any, Any, Any]:
        try:
            return (
                await dispatch.plan(long_answer, model="hybrid"),
                await dispatch.plan(long_answer, model="hybrid", override="cloud"),
                await dispatch.plan(REQUEST, model="hybrid", override="lan"),
            )
        finally:
            await lan.pool.aclose()

    plan, explicit, pinned_to_lan = asyncio.run(scenario())
    names = route_cmd.lan_servers(dispatch)
    assert names == ("gpu-box", "mac-mini")
    out = io.StringIO()
    route_cmd._print_plan(plan, out, lan=names)
    text = out.getvalue()
    assert (
        "route:   cloud (LAN servers first: gpu-box, mac-mini; then the local model, as no cloud "
        "model is configured)"
    ) in text
    assert "no_cloud_configured" not in text and "note:" not in text
    document = json.loads(json.dumps(route_cmd._plan_json(plan, verdicts=True, lan=names)))
    assert document["lan_servers"] == ["gpu-box", "mac-mini"]
    # A client's explicit cloud route skips the LAN tier, and says nothing of it.
    out = io.StringIO()
    route_cmd._print_plan(explicit, out, lan=names)
    assert "LAN servers" not in out.getvalue()
    assert "lan_servers" not in route_cmd._plan_json(explicit, verdicts=True, lan=names)
    # X-Hybrid-Route: lan (hybrid route --route lan): the LAN servers, and never the cloud.
    out = io.StringIO()
    route_cmd._print_plan(pinned_to_lan, out, lan=names)
    assert "route:   lan (LAN servers: gpu-box, mac-mini; never the cloud)" in out.getvalue()
    assert "reason:  explicit:lan" in out.getvalue()
    document = route_cmd._plan_json(pinned_to_lan, verdicts=True, lan=names)
    assert document["target"] == "lan" and document["lan_servers"] == ["gpu-box", "mac-mini"]
    assert document["model"] is None
    # Without a LAN tier, the same request stays local and says why.
    alone = Dispatcher(
        FakeLocal(),
        {},
        ModelNames([ProviderModels("openai", ("gpt-4.1-mini",), usable=False)], None),
        router=build_router(RoutingSettings()),
    )
    plan = asyncio.run(alone.plan(long_answer, model="hybrid"))
    assert plan.decision.reasons[0] == "local:no_cloud_configured"
    assert route_cmd.lan_servers(alone) == ()


def test_x_hybrid_route_lan_sends_a_request_the_device_could_answer_to_a_lan_server(
    boxes: tuple[FakeCloud, FakeCloud],
) -> None:
    a, _ = boxes
    lan = lan_tier(server("gpu-box", a))
    local, openai = FakeLocal(), FakeProvider("openai")

    async def scenario() -> tuple[Answer, str]:
        answer = await dispatcher(local, lan, openai).start(REQUEST, model="hybrid", override="lan")
        said = await text(answer)
        await lan.pool.aclose()
        return answer, said

    answer, said = asyncio.run(scenario())
    assert said == "from a"
    assert (answer.route, answer.model, answer.decided) == ("lan", f"gpu-box/{BIG}", "client")
    assert answer.reason == f"lan:gpu-box/{BIG};explicit:lan"
    assert local.started == 0 and openai.models_asked == []


def test_x_hybrid_route_lan_never_reaches_the_cloud_when_no_lan_server_answers(
    boxes: tuple[FakeCloud, FakeCloud],
) -> None:
    a, _ = boxes
    a.default_fault = Fault.status(500)
    openai = FakeProvider("openai")

    async def scenario(local: FakeLocal, fallback: bool) -> Answer | NoRouteError:
        lan = lan_tier(server("a", a))
        dispatch = dispatcher(local, lan, openai, local_fallback=fallback)
        try:
            return await dispatch.start(REQUEST, model="hybrid", override="lan")
        except NoRouteError as exc:
            return exc
        finally:
            await lan.pool.aclose()

    # The local model answers instead, as after a cloud failure, and says why.
    answer = asyncio.run(scenario(FakeLocal(), True))
    assert isinstance(answer, Answer) and answer.route == "local"
    assert answer.reason == "lan_unavailable:failed:a:unavailable;explicit:lan"
    # With the local model busy, or local fallback off, the client hears why: never the cloud.
    for local, fallback in ((busy(), True), (FakeLocal(), False)):
        refused = asyncio.run(scenario(local, fallback))
        assert isinstance(refused, NoRouteError) and refused.should_retry
        assert "no LAN server answered the request (lan:failed:a:unavailable)" in str(refused)
        assert "X-Hybrid-Route: lan" in str(refused)
    assert "local fallback is off" in str(refused)
    assert openai.models_asked == []


def test_x_hybrid_route_lan_without_lan_servers_says_how_to_configure_them() -> None:
    dispatch = Dispatcher(
        FakeLocal(),
        {"openai": FakeProvider("openai")},  # type: ignore[dict-item]
        ModelNames([ProviderModels("openai", ("gpt-4.1-mini",), usable=True)], None),
        router=build_router(RoutingSettings()),
    )
    with pytest.raises(InvalidRequestError, match=r"\[\[lan.servers\]\]") as refused:
        asyncio.run(dispatch.start(REQUEST, model="hybrid", override="lan"))
    assert refused.value.param == "X-Hybrid-Route"


def test_x_hybrid_route_lan_keeps_private_data_off_untrusted_servers(
    boxes: tuple[FakeCloud, FakeCloud],
) -> None:
    a, _ = boxes
    lan = lan_tier(server("open", a))
    local = FakeLocal()

    async def scenario() -> Answer:
        answer = await dispatcher(local, lan, FakeProvider("openai")).start(
            EMAIL, model="hybrid", override="lan"
        )
        await lan.pool.aclose()
        return answer

    answer = asyncio.run(scenario())
    assert answer.route == "local" and answer.reason.startswith("privacy:email")
    assert a.requests == []


def test_hybrid_route_takes_every_route_the_header_takes() -> None:
    import argparse

    from hybrid.routing.answer import ROUTE_OVERRIDES

    parser = argparse.ArgumentParser(exit_on_error=False)
    route_cmd.add_arguments(parser)
    for route in ROUTE_OVERRIDES:
        assert parser.parse_args(["--route", route, "hello"]).route == route
    with pytest.raises(argparse.ArgumentError, match="invalid choice"):
        parser.parse_args(["--route", "moon", "hello"])
