"""Switching the local model while it serves, and unloading it while idle.

The models are fakes (:mod:`switch_fakes`) on the real runtime, backend and work queue: an
answer says which model gave it, and can be held mid-generation to see what happens to the
requests in flight when the model is switched.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from switch_fakes import FakeOpener, fake_runtime

from hybrid.errors import InvalidRequestError, SwitchInProgressError
from hybrid.generation import GenerationRequest, SamplingParams, TextDelta
from hybrid.local.runtime import LocalRuntime
from hybrid.local.status import ModelChange


def ask(text: str) -> GenerationRequest:
    return GenerationRequest("r", prompt=text, params=SamplingParams(max_tokens=2))


async def answer_of(runtime_backend: object, text: str) -> str:
    generation = await runtime_backend.start(ask(text))  # type: ignore[attr-defined]
    return "".join([e.text async for e in generation if isinstance(e, TextDelta)])


async def until(condition: object, changes: asyncio.Queue[ModelChange] | None = None) -> None:
    while not condition():  # type: ignore[operator]
        await asyncio.sleep(0.01)


def test_requests_in_flight_finish_on_the_old_model_and_new_ones_use_the_new(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        opener = FakeOpener()
        runtime, _ = fake_runtime(tmp_path, opener)
        changes: list[str] = []
        runtime.subscribe(lambda change: changes.append(change.kind))
        await runtime.load()
        old = runtime.backend()
        opener.hold.clear()  # answers wait mid-generation
        running = asyncio.create_task(answer_of(old, "one"))
        queued = asyncio.create_task(answer_of(old, "two"))
        await asyncio.to_thread(opener.engines["first-model"].running.wait, 10)

        opener.loading.clear()
        planned = await asyncio.to_thread(
            runtime.plan_switch, tmp_path / "models" / "second-model.gguf"
        )
        switched = runtime.begin_switch(planned)
        await asyncio.to_thread(opener.load_started.wait, 10)
        status = runtime.status()
        assert status.state == "switching" and status.model == "first-model"
        assert status.loading is not None and status.loading.model_id == "second-model"
        assert runtime.backend() is old  # the old model serves while the new one loads

        opener.loading.set()
        await switched
        new = runtime.backend()
        assert new is not old and new.model_id == "second-model"
        assert runtime.status().state == "ready" and changes[-2:] == ["loading", "switched"]
        # The old model is not freed under the requests it had taken.
        await asyncio.sleep(0.1)
        assert not opener.engines["first-model"].freed.is_set()

        opener.hold.set()
        assert await running == "first-model"
        assert await queued == "first-model"
        assert await answer_of(runtime.backend(), "three") == "second-model"
        await asyncio.to_thread(opener.engines["first-model"].freed.wait, 10)
        assert opener.engines["first-model"].freed.is_set()
        await runtime.close()
        assert opener.engines["second-model"].freed.is_set()

    asyncio.run(scenario())


def test_a_request_prepared_on_the_old_model_is_prepared_again_on_the_new(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        opener = FakeOpener()
        runtime, _ = fake_runtime(tmp_path, opener)
        await runtime.load()
        prepared = await runtime.backend().prepare(ask("a b c"))
        planned = await asyncio.to_thread(
            runtime.plan_switch, tmp_path / "models" / "second-model.gguf"
        )
        await runtime.begin_switch(planned)
        generation = await runtime.backend().start(ask("a b c"), prepared=prepared)
        text = "".join([e.text async for e in generation if isinstance(e, TextDelta)])
        assert text == "second-model"
        await runtime.close()

    asyncio.run(scenario())


def test_a_second_switch_while_one_loads_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        opener = FakeOpener()
        runtime, _ = fake_runtime(tmp_path, opener)
        await runtime.load()
        second = tmp_path / "models" / "second-model.gguf"
        planned = await asyncio.to_thread(runtime.plan_switch, second)
        opener.loading.clear()
        switched = runtime.begin_switch(planned)
        with pytest.raises(SwitchInProgressError, match="second-model is loading now"):
            runtime.begin_switch(planned)
        opener.loading.set()
        await switched
        assert runtime.model_id == "second-model"
        await runtime.close()

    asyncio.run(scenario())


def test_a_failed_switch_keeps_the_old_model_serving_and_says_why(tmp_path: Path) -> None:
    async def scenario() -> None:
        opener = FakeOpener()
        runtime, _ = fake_runtime(tmp_path, opener)
        await runtime.load()
        planned = await asyncio.to_thread(
            runtime.plan_switch, tmp_path / "models" / "second-model.gguf"
        )
        opener.fail = InvalidRequestError("llama.cpp could not load it")
        await runtime.begin_switch(planned)
        status = runtime.status()
        assert status.state == "ready" and status.model == "first-model"
        assert status.switch_error == (
            "switching to second-model failed: llama.cpp could not load it"
        )
        assert await answer_of(runtime.backend(), "x") == "first-model"
        await runtime.close()

    asyncio.run(scenario())


def test_a_model_that_does_not_fit_is_refused_before_loading(tmp_path: Path) -> None:
    async def scenario() -> None:
        opener = FakeOpener()
        runtime, settings = fake_runtime(tmp_path, opener)
        await runtime.load()
        from hardware_fakes import build_snapshot

        tight = LocalRuntime(
            settings,
            snapshot=lambda: build_snapshot(total=2**30, available=2**20),
            opener=opener,
        )
        with pytest.raises(InvalidRequestError, match="second-model does not fit this machine"):
            tight.plan_switch(tmp_path / "models" / "second-model.gguf")
        await runtime.close()

    asyncio.run(scenario())


def test_an_idle_model_is_unloaded_and_the_next_request_reloads_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        opener = FakeOpener()
        runtime, _ = fake_runtime(tmp_path, opener, keep_alive=0)
        changes: list[str] = []
        runtime.subscribe(lambda change: changes.append(change.kind))
        await runtime.load()
        first = runtime.backend()
        assert await answer_of(first, "x") == "first-model"
        idling = asyncio.create_task(runtime.keep_alive())
        await until(lambda: runtime.state == "unloaded")
        assert opener.engines["first-model"].freed.is_set()
        assert runtime.status().state == "unloaded"
        assert runtime.expected_load_s() == 0.25  # the load time measured before
        assert runtime.last_speed is first.speed

        await runtime.wake()
        assert runtime.state == "ready" and opener.opened == 2
        assert opener.speeds[-1] is first.speed  # the reload keeps the measured speed
        assert await answer_of(runtime.backend(), "y") == "first-model"
        assert changes[:4] == ["ready", "unloaded", "loading", "reloaded"]
        idling.cancel()
        await runtime.close()

    asyncio.run(scenario())


def test_a_negative_keep_alive_never_unloads(tmp_path: Path) -> None:
    async def scenario() -> None:
        runtime, _ = fake_runtime(tmp_path, FakeOpener(), keep_alive=-1)
        await runtime.load()
        await runtime.keep_alive()  # returns at once: nothing to watch
        assert runtime.state == "ready"
        await runtime.close()

    asyncio.run(scenario())
