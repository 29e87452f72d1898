"""Fixtures of the routing tests that reach real servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_cloud import FakeCloud
from routing_fakes import BIG


@pytest.fixture
def boxes() -> Iterator[tuple[FakeCloud, FakeCloud]]:
    """Two team servers on loopback (``a`` and ``b``), each serving the big model, answering
    with its own name."""
    with (
        FakeCloud(reply="from a", models=(BIG,)) as a,
        FakeCloud(reply="from b", models=(BIG,)) as b,
    ):
        yield a, b
