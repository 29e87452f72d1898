"""``l`` in the monitor: the models the daemon lists (``GET /v1/hybrid/model``) in a picker, the
one picked switched to with ``POST /v1/hybrid/model``; ``model`` events become notifications."""

from __future__ import annotations

import json
from typing import Any

import httpx2
from monitor_fakes import FakeDaemon, synchronous
from test_app import live, monitor, until
from textual.widgets import OptionList

from hybrid.monitor.app import MonitorApp
from hybrid.monitor.screens.model_picker import ModelPicker

SERVING = "gemma-3-270m-q4_k_m"
OTHERS = ["llama3.2:3b", "qwen2.5-0.5b-instruct-q4_k_m"]


class ModelDaemon(FakeDaemon):
    """The fake daemon, with the model routes: it lists :data:`SERVING` and :data:`OTHERS`,
    keeps every switch asked for, and answers 202 as the daemon does."""

    def __init__(self) -> None:
        super().__init__()
        self.model_posts: list[Any] = []

    async def handle(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path != "/v1/hybrid/model":
            return await super().handle(request)
        if request.method == "POST":
            body = json.loads(request.content)
            self.model_posts.append(body)
            loading = {"model": body["model"], "path": "/m", "reason": "switch", "started": 0}
            return httpx2.Response(
                202, json={"state": "switching", "model": SERVING, "loading": loading}
            )
        available = [
            {"name": name, "path": f"/m/{name}.gguf", "serving": name == SERVING}
            for name in (SERVING, *OTHERS)
        ]
        return httpx2.Response(
            200, json={"state": "ready", "model": SERVING, "available": available}
        )


def messages(app: MonitorApp) -> list[str]:
    return [notification.message for notification in app._notifications]


def listed(app: MonitorApp) -> list[str]:
    options = app.screen.query_one(OptionList)
    return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]


@synchronous
async def test_l_lists_the_daemons_models_and_switches_to_the_one_picked() -> None:
    fake = ModelDaemon()
    app = monitor(fake)
    async with app.run_test(size=(100, 30)) as pilot:
        await live(pilot, app)
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, ModelPicker), "the model picker")
        assert listed(app) == [f"{SERVING}  (serving)", *OTHERS]

        await pilot.press("down", "down", "enter")  # the serving model is highlighted first
        await until(pilot, lambda: bool(fake.model_posts), "a switch asked for")
        await until(pilot, lambda: bool(messages(app)), "a notification")
        assert not isinstance(app.screen, ModelPicker)
    assert fake.model_posts == [{"model": OTHERS[1]}]
    assert messages(app) == [f"loading {OTHERS[1]}; {SERVING} serves until it is ready"]


@synchronous
async def test_escape_closes_the_picker_without_a_switch() -> None:
    fake = ModelDaemon()
    app = monitor(fake)
    async with app.run_test(size=(100, 30)) as pilot:
        await live(pilot, app)
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, ModelPicker), "the model picker")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ModelPicker), "the picker closed")
    assert fake.model_posts == []


@synchronous
async def test_model_events_are_notified() -> None:
    fake = ModelDaemon()
    app = monitor(fake)
    async with app.run_test(size=(100, 30)) as pilot:
        await live(pilot, app)
        status = {"state": "ready", "model": OTHERS[0], "loading": None, "switch_error": None}
        fake.send("model", {"change": "switched", **status})
        await until(pilot, lambda: bool(messages(app)), "the switch notified")
        failed = "switching to x failed: not a GGUF file"
        fake.send("model", {"change": "switch_failed", **status, "switch_error": failed})
        await until(pilot, lambda: len(messages(app)) == 2, "the failure notified")
    assert messages(app) == [f"switched to {OTHERS[0]}", failed]
