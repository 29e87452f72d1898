"""A real ``hybrid serve`` on a GGUF nobody calibrated: it routes on a prior from the first
request, and calibrates the model in the background while it serves."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from gguf_patch import add_string_metadata
from server_process import RunningServer

from hybrid.models.embedded import ensure_embedded_model
from hybrid.routing.calibration.items import CATEGORIES
from hybrid.routing.calibration.record import load_record
from hybrid.routing.difficulty.store import gguf_sha256, model_path

pytestmark = pytest.mark.slow

PER_CATEGORY = 2  # 30 items: enough to watch progress, too few for a fit to be trusted
DEADLINE_S = 300


def calibration(server: RunningServer) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{server.base_url}/health", timeout=10).json()
    found: dict[str, Any] = body["calibration"]
    return found


def wait_for(server: RunningServer, condition: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Health's calibration once ``condition`` holds (a wait with a generous deadline)."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        current = calibration(server)
        if condition(current):
            return current
        time.sleep(0.2)
    pytest.fail(f"the calibration never got there: {calibration(server)}\n{server.log.read_text()}")


def test_an_uncalibrated_model_routes_on_its_prior_and_is_calibrated_while_serving(
    start_server: Callable[..., RunningServer],
    hybrid_home: Path,
    tmp_path: Path,
) -> None:
    # The embedded model with one more metadata string: the same weights, another SHA-256, so
    # neither the shipped calibration nor any earlier one applies.
    model = tmp_path / "my-own-gemma.gguf"
    add_string_metadata(
        ensure_embedded_model(hybrid_home), model, "general.description", f"copy {time.time()}"
    )
    sha256 = gguf_sha256(model)
    server = start_server(
        "--model",
        str(model),
        "--ctx",
        "1024",
        env={"HYBRID_ROUTING__CALIBRATION__PER_CATEGORY": str(PER_CATEGORY)},
    )

    at_start = wait_for(server, lambda c: c["state"] != "waiting")
    assert at_start["state"] == "prior" and at_start["source"] == "prior"
    assert at_start["prior"]["family"] == "gemma3"
    assert at_start["background"] is not None

    reply = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        json={
            "model": "hybrid",
            "messages": [{"role": "user", "content": "What is 17 * 23?"}],
            "max_tokens": 8,
        },
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    assert "difficulty(prior):" in reply.headers["x-hybrid-reason"]

    moving = wait_for(server, lambda c: (c["background"] or {}).get("done", 0) > 0)
    assert moving["background"]["total"] == len(CATEGORIES) * PER_CATEGORY

    done = wait_for(server, lambda c: c["background"]["state"] in ("adopted", "kept-prior"))
    progress = done["background"]
    assert progress["done"] == progress["total"] == len(CATEGORIES) * PER_CATEGORY
    # 18 items hold out 6: too few to trust a fit, so the prior stays, and says why.
    assert progress["state"] == "kept-prior", progress
    assert done["state"] == "prior"
    assert not model_path(hybrid_home, sha256).exists()
    record = load_record(hybrid_home, sha256)
    assert record is not None and len(record.answers) == len(CATEGORIES) * PER_CATEGORY
    # The model's own vector of each prompt it could take was recorded, for the model stage.
    taken = [answer for answer in record.answers if any(answer.texts)]
    assert taken and all(answer.embedding is not None for answer in taken)
    assert {len(answer.embedding or ()) for answer in taken} == {640}  # Gemma 3 270M's width
    assert server.stop() == 0, server.log.read_text()
