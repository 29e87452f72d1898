from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest
from fake_cloud import FakeCloud


@pytest.fixture
def openai_client(cloud: FakeCloud) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        api_key="sk-fake-openai", base_url=cloud.base_url + "/v1", max_retries=0, timeout=5
    ) as client:
        yield client


@pytest.fixture
def anthropic_client(cloud: FakeCloud) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        api_key="sk-ant-fake", base_url=cloud.base_url, max_retries=0, timeout=5
    ) as client:
        yield client
