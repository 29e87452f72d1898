"""Valid OpenAI and Anthropic request bodies, broken every way hypothesis can think of.

A field dropped, written twice, given another type, a number past what a double or an int64
holds, strings of lone surrogates, control characters and invalid UTF-8, values nested deep:
each is answered with a status hybrid documents, an error in the API's own shape, and never a
traceback; and the connection it came on serves the next request.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any

import httpx
import hypothesis
import pytest
from fake_cloud import FakeCloud
from hypothesis import strategies as st
from server_logs import logged_tracebacks
from soak_tally import SoakTally
from spending_requests import error_code

DOCUMENTED = {200, 400, 404, 413, 415, 429, 503}
FAST_EXAMPLES = 60
SOAK_EXAMPLES = 1500

CHAT = {
    "model": "local",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
    ],
    "max_tokens": 8,
    "temperature": 0.5,
    "stop": ["\n"],
    "stream": False,
}
COMPLETION = {"model": "local", "prompt": "Once upon", "max_tokens": 8, "stream": True}
MESSAGES = {
    "model": "local",
    "max_tokens": 8,
    "system": "Be brief.",
    "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
        {"role": "user", "content": [{"type": "text", "text": "Bye"}]},
    ],
    "stop_sequences": ["\n"],
    "stream": True,
}
SHAPES = {
    "/v1/chat/completions": "openai",
    "/v1/completions": "openai",
    "/v1/messages": "anthropic",
}
# Valid bodies for each endpoint, answered by the local model or, through the fake cloud, by the
# provider's encoder and decoder.
VALID = {
    "chat, local": ("/v1/chat/completions", CHAT),
    "chat, cloud": ("/v1/chat/completions", {**CHAT, "model": "gpt-4.1-mini", "seed": 7}),
    "completion, local": ("/v1/completions", COMPLETION),
    "messages, local": ("/v1/messages", MESSAGES),
    "messages, cloud": ("/v1/messages", {**MESSAGES, "model": "claude-haiku-4-5"}),
}
# The seeds that ask for the cloud, and how.
TO_CLOUD = {"X-Hybrid-Route": "cloud"}
CLOUD_SEEDS = {"chat, cloud", "messages, cloud"}


@dataclass(frozen=True)
class Duplicated:
    """An object that names a key twice: valid JSON, on which parsers disagree."""

    pairs: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Number:
    """A number token as written, out of the range of a double or an int64, or not JSON."""

    text: str


HUGE = [
    "1e400",
    "-1e400",
    "1e-400",
    "1" + "0" * 400,
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "-0",
    "4.9e-324",
    "1.7976931348623157e308",
    "NaN",
    "Infinity",
]
ODD_TEXT = [
    "\ud800",
    "\udfff\ud800",
    "\x00",
    "\u202e\u2066",
    "\ufeff",
    "e\u0301" * 40,
    "\U0001f980" * 50,
    "\r\n\r\ndata: [DONE]\n\n",
    "",
]
strings = st.text(max_size=40) | st.sampled_from(ODD_TEXT)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | strings
    | st.builds(Number, st.sampled_from(HUGE))
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(strings, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with one thing changed, here or somewhere inside it."""
    if isinstance(value, dict) and value and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)))
        return {**value, key: draw(mutated(value[key]))}
    if isinstance(value, list) and value and draw(st.booleans()):
        index = draw(st.integers(0, len(value) - 1))
        return [*value[:index], draw(mutated(value[index])), *value[index + 1 :]]
    kinds = ["retype", "huge", "text", "nest", "empty"]
    if isinstance(value, dict) and value:
        kinds += ["drop", "duplicate", "unknown"]
    kind = draw(st.sampled_from(kinds))
    if kind == "drop":
        key = draw(st.sampled_from(sorted(value)))
        return {k: v for k, v in value.items() if k != key}
    if kind == "duplicate":
        key = draw(st.sampled_from(sorted(value)))
        again = (key, draw(values | st.just(value[key])))
        pairs = [*value.items(), again] if draw(st.booleans()) else [again, *value.items()]
        return Duplicated(tuple(pairs))
    if kind == "unknown":
        return {**value, draw(strings): draw(values)}
    if kind == "huge":
        return Number(draw(st.sampled_from(HUGE)))
    if kind == "text":
        return draw(strings)
    if kind == "nest":
        depth = draw(st.integers(1, 200))
        for _ in range(depth):
            value = [value] if draw(st.booleans()) else {"x": value}
        return value
    if kind == "empty":
        return draw(st.sampled_from([[], {}, "", None, 0]))
    return draw(values)


def encode(value: Any, *, ascii_only: bool) -> str:
    """JSON text for ``value``, with what the json module will not write written as asked."""
    if isinstance(value, Number):
        return value.text
    if isinstance(value, dict | Duplicated):
        pairs = value.pairs if isinstance(value, Duplicated) else value.items()
        return (
            "{"
            + ",".join(
                f"{encode(k, ascii_only=ascii_only)}:" + encode(v, ascii_only=ascii_only)
                for k, v in pairs
            )
            + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(encode(item, ascii_only=ascii_only) for item in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


@st.composite
def broken_requests(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    """An endpoint, a body (a valid one with one to three things changed) and headers."""
    seed = draw(st.sampled_from(sorted(VALID)))
    path, body = VALID[seed]
    for _ in range(draw(st.integers(1, 3))):
        body = draw(mutated(body))
    # Lone surrogates written raw are not UTF-8 at all; escaped, they are valid JSON.
    text = encode(body, ascii_only=draw(st.booleans()))
    return path, text.encode("utf-8", "surrogatepass"), TO_CLOUD if seed in CLOUD_SEEDS else {}


def check_answer(path: str, status: int, headers: http.client.HTTPMessage, raw: bytes) -> None:
    """A documented status, and for an error, the API's own error shape."""
    assert status in DOCUMENTED, (status, raw[:500])
    assert b"Traceback" not in raw
    if status == 200:
        if headers.get("content-type", "").startswith("text/event-stream"):
            assert raw.startswith((b"data: ", b"event: "))
        else:
            assert isinstance(json.loads(raw), dict)
        return
    error_code(json.loads(raw), SHAPES[path])


def exchange(
    connection: http.client.HTTPConnection,
    path: str,
    body: bytes,
    headers: dict[str, str],
    statuses: list[int],
) -> None:
    """POST ``body`` on ``connection`` (its status goes to ``statuses``), check the answer,
    and that the connection stays open."""
    connection.request("POST", path, body, {**headers, "Content-Type": "application/json"})
    sock = connection.sock
    response = connection.getresponse()
    statuses.append(response.status)
    raw = response.read()
    check_answer(path, response.status, response.headers, raw)
    assert response.getheader("connection", "").lower() != "close"
    assert connection.sock is sock is not None


def run(base_url: str, examples: int, *, derandomize: bool, statuses: list[int]) -> None:
    """Send ``examples`` broken requests on one connection, then a healthy one on it."""
    url = httpx.URL(base_url)
    connection = http.client.HTTPConnection(url.host, url.port, timeout=60)

    @hypothesis.settings(
        max_examples=examples,
        derandomize=derandomize,
        database=None,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(request=broken_requests())
    def answered_as_documented(request: tuple[str, bytes, dict[str, str]]) -> None:
        exchange(connection, *request, statuses)

    try:
        answered_as_documented()
        connection.request("GET", "/health")
        assert connection.getresponse().status == 200
    finally:
        connection.close()


@pytest.mark.parametrize("seed", sorted(VALID))
def test_the_valid_bodies_are_answered(default_server: str, seed: str) -> None:
    # The mutations start from these; a body refused already would test nothing.
    path, body = VALID[seed]
    headers = TO_CLOUD if seed in CLOUD_SEEDS else {}
    response = httpx.post(f"{default_server}{path}", json=body, headers=headers)
    assert response.status_code == 200
    assert response.headers["x-hybrid-route"] == ("cloud" if seed in CLOUD_SEEDS else "local")


HUGE_INTEGER = 2**70
TOO_BIG = {
    "seed": ("chat, cloud", {"seed": HUGE_INTEGER}, "seed"),
    "max_tokens": ("chat, cloud", {"max_tokens": HUGE_INTEGER}, "max_tokens"),
    "tool schema": (
        "chat, cloud",
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "pick",
                        "parameters": {"type": "object", "maximum": HUGE_INTEGER},
                    },
                }
            ]
        },
        "tools[0].function.parameters",
    ),
    "anthropic max_tokens": ("messages, cloud", {"max_tokens": HUGE_INTEGER}, "max_tokens"),
    "tool_use input": (
        "messages, cloud",
        {
            "messages": [
                {"role": "user", "content": "Pick"},
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": "t1",
                            "name": "pick",
                            "input": {"n": HUGE_INTEGER},
                        }
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}],
                },
            ],
            "tools": [{"name": "pick", "input_schema": {"type": "object"}}],
        },
        "messages[1].content[0].input",
    ),
}


@pytest.mark.parametrize(("seed", "change", "param"), TOO_BIG.values(), ids=TOO_BIG.keys())
def test_an_integer_beyond_64_bits_is_a_400_not_sent_on(
    default_server: str, fake: FakeCloud, seed: str, change: dict[str, Any], param: str
) -> None:
    # Found by the soak: the provider's encoder cannot write it, and the request ended in a 500.
    path, body = VALID[seed]
    response = httpx.post(f"{default_server}{path}", json={**body, **change}, headers=TO_CLOUD)

    assert response.status_code == 400
    assert error_code(response.json(), SHAPES[path]) in ("invalid_value", "invalid_request_error")
    assert f"invalid value for {param!r}" in response.json()["error"]["message"]
    assert fake.requests == []


def test_a_broken_body_is_a_documented_answer_and_the_connection_lives(
    default_server: str,
) -> None:
    statuses: list[int] = []
    with logged_tracebacks() as tracebacks:
        run(default_server, FAST_EXAMPLES, derandomize=True, statuses=statuses)
    assert 400 in statuses
    assert tracebacks == []


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_soak_broken_bodies(default_server: str, soak_tally: SoakTally) -> None:
    statuses: list[int] = []
    with logged_tracebacks() as tracebacks:
        try:
            run(default_server, SOAK_EXAMPLES, derandomize=False, statuses=statuses)
        finally:
            soak_tally.add(
                "mutated bodies",
                requests=len(statuses),
                server_errors=sum(status >= 500 for status in statuses),
                tracebacks=len(tracebacks),
            )
    assert tracebacks == []
