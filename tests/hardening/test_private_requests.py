"""A request with private data that the local model cannot serve is refused, never sent out.

The scripted local model reads text only and calls no tools, like the embedded one.  A private
request that needs tools or an image gets the documented 503 ``private_data_kept_local``, not the
local model's 400 that tells the client to route it to the cloud; the fake cloud sees nothing.
"""

from __future__ import annotations

import httpx
import pytest
from fake_cloud import FakeCloud
from spending_requests import error_code

PRIVATE = "Email jane.doe@example.com the forecast for Paris."
TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}
PNG = (  # a 1x1 pixel
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
OPENAI_IMAGE = [
    {"type": "text", "text": PRIVATE},
    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
]
ANTHROPIC_IMAGE = [
    {"type": "text", "text": PRIVATE},
    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
]
CASES = {
    "tools, auto": (
        "/v1/chat/completions",
        {"model": "hybrid", "messages": [{"role": "user", "content": PRIVATE}], "tools": [TOOL]},
        "openai",
    ),
    "image, cloud asked for": (
        "/v1/chat/completions",
        {"model": "cloud", "messages": [{"role": "user", "content": OPENAI_IMAGE}]},
        "openai",
    ),
    "anthropic image": (
        "/v1/messages",
        {
            "model": "cloud",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": ANTHROPIC_IMAGE}],
        },
        "anthropic",
    ),
    "anthropic tools": (
        "/v1/messages",
        {
            "model": "hybrid",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": PRIVATE}],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        },
        "anthropic",
    ),
}


@pytest.mark.parametrize(("path", "body", "shape"), CASES.values(), ids=CASES.keys())
def test_private_data_that_needs_tools_or_an_image_is_kept_local_with_a_503(
    fake: FakeCloud, hybrid: str, path: str, body: dict[str, object], shape: str
) -> None:
    response = httpx.post(f"{hybrid}{path}", json=body)

    assert response.status_code == 503, response.text
    code = error_code(response.json(), shape)
    assert code == ("private_data_kept_local" if shape == "openai" else "overloaded_error")
    message = str(response.json()["error"]["message"])
    assert "privacy:email" in message and "routing.privacy.allow_cloud" in message
    assert "X-Hybrid-Route: cloud" not in message and "jane.doe" not in message
    assert fake.requests == []
