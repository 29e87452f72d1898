"""Decode speed per batch size: measured where seen, estimated conservatively elsewhere."""

from __future__ import annotations

import pytest

from hybrid.generation import GenerationDone, Usage
from hybrid.local.speed import MIN_PROMPT_TOKENS, SpeedMeter


def done(
    rate: float,
    batch: float | None,
    *,
    prompt: int = 10,
    reused: int = 0,
    ttft: float | None = None,
) -> GenerationDone:
    return GenerationDone(
        "stop",
        Usage(prompt, 50, cache_read_tokens=reused),
        decode_tokens_per_s=rate,
        time_to_first_token_s=ttft,
        batch_size=batch,
    )


def meter(*samples: tuple[float, float | None]) -> SpeedMeter:
    speed = SpeedMeter()
    for rate, batch in samples:
        speed.observe(done(rate, batch), constrained=False)
    return speed


def test_each_batch_size_keeps_its_own_mean_and_aggregate() -> None:
    speed = meter((60.0, None), (40.0, 2.4), (25.0, 3.6), (24.0, 4.0))
    # 2.4 decoded mostly beside one other: batch 2; 3.6 and 4.0 both count as 4.
    assert speed.decode_samples_by_batch == {1: 1, 2: 1, 4: 2}
    aggregate = speed.aggregate_decode_tokens_per_s
    assert list(aggregate) == [1, 2, 4]
    assert aggregate[1] == 60.0 and aggregate[2] == 80.0
    assert aggregate[4] == pytest.approx(4 * (25.0 + 0.2 * (24.0 - 25.0)))
    # The single-stream figure (/health, the monitor) is batch 1's, not a batch's.
    assert speed.decode_tokens_per_s == 60.0
    assert speed.stream_decode_tokens_per_s(2) == 40.0
    assert speed.samples == 4


def test_before_any_batch_is_measured_the_batch_is_assumed_to_gain_nothing() -> None:
    speed = meter((60.0, 1.0))
    assert speed.stream_decode_tokens_per_s(1) == 60.0
    assert speed.stream_decode_tokens_per_s(3) == pytest.approx(20.0)
    assert speed.stream_decode_tokens_per_s(0) == 60.0  # below one counts as one
    assert SpeedMeter().stream_decode_tokens_per_s(2) is None


def test_between_measured_batches_the_aggregate_is_interpolated() -> None:
    speed = meter((60.0, 1.0), (30.0, 4.0))  # aggregates 60 and 120
    # Batch 2: aggregate 60 + 60 * 1/3 = 80, 40 per stream.
    assert speed.stream_decode_tokens_per_s(2) == pytest.approx(40.0)
    assert speed.stream_decode_tokens_per_s(3) == pytest.approx(100.0 / 3)
    # Beyond the largest measured, the aggregate stays at 120.
    assert speed.stream_decode_tokens_per_s(8) == pytest.approx(15.0)


def test_without_a_single_stream_measurement_the_smallest_batch_bounds_it() -> None:
    speed = meter((30.0, 4.0))
    # A stream alone is no slower than in a batch of four: its rate is the lower bound.
    assert speed.decode_tokens_per_s == 30.0
    assert speed.stream_decode_tokens_per_s(1) == 30.0
    assert speed.stream_decode_tokens_per_s(2) == 30.0
    assert speed.stream_decode_tokens_per_s(6) == pytest.approx(20.0)


def test_constrained_answers_are_left_out_of_every_batch_size() -> None:
    speed = SpeedMeter()
    speed.observe(done(5.0, 3.0), constrained=True)
    assert speed.aggregate_decode_tokens_per_s == {} and speed.decode_tokens_per_s is None


def test_prefill_speed_counts_only_the_prompt_tokens_evaluated() -> None:
    speed = SpeedMeter()
    # 400 of 500 tokens came from the slot's cache: 100 evaluated in 0.5 s.
    speed.observe(done(50.0, 1.0, prompt=500, reused=400, ttft=0.5), constrained=False)
    assert speed.prefill_tokens_per_s == pytest.approx(200.0)
    # A prompt nearly all reused says nothing about prefill speed.
    reused = 500 - (MIN_PROMPT_TOKENS - 1)
    speed.observe(done(50.0, 1.0, prompt=500, reused=reused, ttft=0.001), constrained=False)
    assert speed.prefill_tokens_per_s == pytest.approx(200.0)
