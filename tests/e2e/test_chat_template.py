"""A model whose GGUF carries a chat template is prompted through that template."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
from gguf_patch import add_string_metadata
from server_process import RunningServer

from hybrid.models.embedded import ensure_embedded_model
from hybrid.models.gguf import read_gguf

pytestmark = pytest.mark.slow

# Gemma's own turn format; its <start_of_turn> and <end_of_turn> are single special tokens.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>"
    "{{ 'model' if m.role == 'assistant' else m.role }}\n{{ m.content }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@pytest.fixture(scope="module")
def templated_server(
    start_server: Callable[..., RunningServer],
    hybrid_home: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    base = ensure_embedded_model(hybrid_home)
    model = tmp_path_factory.mktemp("templated") / "gemma-with-template.gguf"
    add_string_metadata(base, model, "tokenizer.chat_template", GEMMA_TEMPLATE)
    assert read_gguf(model).chat_template == GEMMA_TEMPLATE
    running = start_server("--model", str(model), "--ctx", "1024")
    yield running
    assert running.stop() == 0, running.log.read_text()


def test_the_files_template_formats_the_chat(templated_server: RunningServer) -> None:
    health = httpx.get(f"{templated_server.base_url}/health").json()
    assert health["model"]["chat_template"] is True
    assert health["model"]["id"] == "gemma-with-template"

    api = openai.OpenAI(base_url=f"{templated_server.base_url}/v1", api_key="x", max_retries=0)
    question = "What is the capital of France?"
    chat = api.chat.completions.create(
        model="local",
        messages=[{"role": "user", "content": question}],
        temperature=0,
        max_tokens=24,
    )
    # The same text written by hand and sent raw: the tokenizer adds the BOS the template wrote.
    raw = api.completions.create(
        model="local",
        prompt=f"<start_of_turn>user\n{question}<end_of_turn>\n<start_of_turn>model\n",
        temperature=0,
        max_tokens=24,
    )
    assert chat.usage is not None and raw.usage is not None
    # Identical prompts, token for token.  (The outputs are not compared: llama.cpp's logits
    # differ in the last digits between a fresh prompt and a cached prefix, which can flip a
    # greedy choice between near-equal tokens of a base model.)
    assert chat.usage.prompt_tokens == raw.usage.prompt_tokens
    # Turn markers are special tokens, parsed as one token each, never spelled out; the
    # transcript format would take 78 tokens for this question (31 without its examples).
    assert chat.usage.prompt_tokens < 20
    assert chat.choices[0].finish_reason in ("stop", "length")
