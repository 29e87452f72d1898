"""The requests the hardening tests send, and how their errors are read.

Every request that could spend money names ``model: "cloud"``, so a request that got through
would show up in the fake cloud's log.  A module of its own, not the conftest: test folders
without ``__init__.py`` share one ``conftest`` module name.
"""

from __future__ import annotations

from typing import Any

CHAT: dict[str, Any] = {
    "model": "cloud",
    "messages": [{"role": "user", "content": "Spend my budget"}],
}
COMPLETION: dict[str, Any] = {"model": "cloud", "prompt": "Spend my budget"}
MESSAGES: dict[str, Any] = {
    "model": "cloud",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "Spend my budget"}],
}
CLOUD_ONLY: dict[str, Any] = {"mode": "cloud-only"}
# Each endpoint a page would post to, with a body that would do harm, and its error shape.
ENDPOINTS: dict[str, tuple[dict[str, Any], str]] = {
    "/v1/chat/completions": (CHAT, "openai"),
    "/v1/completions": (COMPLETION, "openai"),
    "/v1/messages": (MESSAGES, "anthropic"),
    "/v1/hybrid/mode": (CLOUD_ONLY, "openai"),
}


def error_code(body: dict[str, Any], shape: str) -> str:
    """The error's code (OpenAI shape) or type (Anthropic shape), checking the shape."""
    error = body["error"]
    assert isinstance(error, dict)
    if shape == "anthropic":
        assert body["type"] == "error"
        assert set(error) == {"type", "message"}
        return str(error["type"])
    assert set(error) == {"message", "type", "param", "code"}
    return str(error["code"])
