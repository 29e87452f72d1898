from __future__ import annotations

from hybrid.generation import GenerationDone, Usage
from hybrid.local.speed import MIN_TOKENS, SpeedMeter


def done(rate: float | None, tokens: int = 50) -> GenerationDone:
    return GenerationDone("stop", Usage(10, tokens), decode_tokens_per_s=rate)


def test_mean_follows_recent_generations() -> None:
    meter = SpeedMeter()
    assert meter.decode_tokens_per_s is None
    meter.observe(done(60.0), constrained=False)
    assert meter.decode_tokens_per_s == 60.0
    for _ in range(30):
        meter.observe(done(30.0), constrained=False)
    rate = meter.decode_tokens_per_s
    assert rate is not None and 30.0 <= rate < 31.0
    assert meter.samples == 31


def test_short_and_constrained_generations_are_left_out() -> None:
    meter = SpeedMeter()
    meter.observe(done(500.0, tokens=MIN_TOKENS - 1), constrained=False)
    meter.observe(done(5.0), constrained=True)
    meter.observe(done(None), constrained=False)
    assert meter.decode_tokens_per_s is None and meter.samples == 0
