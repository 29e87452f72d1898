"""Prompt tokens read from a cache, on each wire: a provider's prompt cache or a local slot's."""

from __future__ import annotations

from hybrid.generation import Usage
from hybrid.wire.anthropic.respond import usage_json as anthropic_usage
from hybrid.wire.openai.respond import usage_json as openai_usage


def test_openai_reports_cached_prompt_tokens_among_the_prompt_tokens() -> None:
    body = openai_usage(Usage(prompt_tokens=120, completion_tokens=8, cache_read_tokens=100))
    assert body["prompt_tokens"] == 120 and body["total_tokens"] == 128
    assert body["prompt_tokens_details"] == {"cached_tokens": 100}
    assert openai_usage(Usage(3, 1))["prompt_tokens_details"] == {"cached_tokens": 0}


def test_anthropic_reports_cache_reads_and_writes_apart_from_the_input_tokens() -> None:
    body = anthropic_usage(
        Usage(prompt_tokens=120, completion_tokens=8, cache_read_tokens=100, cache_write_tokens=5)
    )
    assert body == {
        "input_tokens": 15,
        "output_tokens": 8,
        "cache_creation_input_tokens": 5,
        "cache_read_input_tokens": 100,
    }
    # The three together are the whole prompt, as Anthropic's clients count it.
    assert sum(body[key] for key in body if key != "output_tokens") == 120
