"""Totals and latency percentiles over ledger records, folded in memory.

:class:`~hybrid.ledger.store.LedgerStore` computes the same figures in SQL; the definitions live
here, and the store's tests check that both agree:

- ``requests`` counts records that are requests: every record but the discarded local leg of
  an escalated cascade, the cloud calls of shadow sampling and the local shadow answers
  (``record.NOT_REQUESTS``).
  ``local``, ``lan``, ``cloud`` and ``refused`` count those requests by route (``none`` for
  refused), so ``requests = local + lan + cloud + refused``; ``errors`` counts those that ended
  in an error while being answered (or failed before an answer started).
- ``local_share`` is ``local / (local + lan + cloud)``: the share of the answered requests this
  machine's model answered.  ``off_cloud_share`` is ``(local + lan) / (local + lan + cloud)``:
  the share kept off the cloud, by this machine or a team's LAN server.  A refused request was
  neither kept nor sent, so it moves neither share.
- Tokens, cloud spend and cost avoided add up over every record, discarded legs and shadow
  legs included: that work was done and paid for (a local shadow answer's cost avoided is minus
  its energy: it answered no client, so it avoided no cloud call).  Cost avoided counts local
  and LAN answers alike (each less what running it cost); a LAN answer is never cloud spend.
  An unpriced cost (None) adds nothing; a refused request has no tokens and no costs.
- ``prefill_saved_tokens`` adds up the ``cache_read_tokens`` of local records (discarded legs
  included): prompt tokens the local model reused from a slot's KV cache instead of evaluating
  them.  A cloud record's cache reads are the provider's, priced in its spend, and not counted.
- Latency percentiles are over requests that finished ``ok``; TTFT over those that had one.
  They are read from histograms with fixed buckets (:mod:`hybrid.ledger.histogram`), so that
  they cost the same over ten records as over ten million: a percentile is the upper bound of
  the bucket holding the nearest-rank value, clamped to the largest value, so the exact
  nearest-rank value is at most the one reported and above it by at most 28 % (1 ms below
  1 ms).  :func:`percentile` computes the exact value, for comparison.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from hybrid.ledger.histogram import Histogram
from hybrid.ledger.record import LedgerRecord


class Counted(Protocol):
    """What :meth:`Totals.fold` reads of a record, or of a rollup of records."""

    @property
    def route(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def is_request(self) -> bool: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def cache_read_tokens(self) -> int: ...
    @property
    def cloud_cost_usd(self) -> float | None: ...
    @property
    def cost_avoided_usd(self) -> float | None: ...


GroupBy = Literal["route", "model", "reason", "day", "decided", "instance"]
GROUP_BYS: tuple[GroupBy, ...] = ("route", "model", "reason", "day", "decided", "instance")

NO_REASON = "none"
"""The reason group of a record that has no reasons."""
NO_DECIDER = "none"
"""The ``decided`` group of a record that names no decider (refused, or from before v3)."""

# Reasons carry measurements (difficulty:0.21<=0.52, capacity:cpu_91%>85%); a group is the
# reason with its measurement cut off, so that requests sent for the same cause land together.
_MEASUREMENT = re.compile(r"[:_][\d.<>=%][^:]*$")


@dataclass(frozen=True)
class Totals:
    """Request counts, tokens and money over a set of records (the ``Totals`` JSON object).

    Attributes:
        requests: Requests (discarded cascade legs are not requests): local + lan + cloud +
            refused.
        local: Requests answered locally.
        cloud: Requests answered in the cloud.
        errors: Requests that ended in an error.
        prompt_tokens: Input tokens over every record.
        completion_tokens: Output tokens over every record.
        cloud_spend_usd: What the cloud charged (priced records only).
        cost_avoided_usd: What local and LAN answers saved, net of what running them cost
            (electricity, ``lan.usd_per_1m_tokens``; priced only).
        refused: Requests turned away before any model ran.
        prefill_saved_tokens: Prompt tokens local answers reused from the local model's KV
            cache (prefix reuse) instead of evaluating them.
        lan: Requests answered by a team's LAN server (route ``lan``).
    """

    requests: int = 0
    local: int = 0
    cloud: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cloud_spend_usd: float = 0.0
    cost_avoided_usd: float = 0.0
    refused: int = 0
    prefill_saved_tokens: int = 0
    lan: int = 0

    @property
    def answered(self) -> int:
        """Requests a model answered (or failed answering): ``local + lan + cloud``."""
        return self.local + self.lan + self.cloud

    @property
    def local_share(self) -> float:
        """``local / (local + lan + cloud)``: of the requests a model answered, the share
        answered by this machine's model; 0 when there were none."""
        answered = self.answered
        return self.local / answered if answered else 0.0

    @property
    def off_cloud_share(self) -> float:
        """``(local + lan) / (local + lan + cloud)``: of the requests a model answered, the
        share kept off the cloud (this machine or a LAN server); 0 when there were none."""
        answered = self.answered
        return (self.local + self.lan) / answered if answered else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the ``Totals`` JSON object of ``docs/events.md``."""
        return {
            "requests": self.requests,
            "local": self.local,
            "lan": self.lan,
            "cloud": self.cloud,
            "errors": self.errors,
            "refused": self.refused,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cloud_spend_usd": self.cloud_spend_usd,
            "cost_avoided_usd": self.cost_avoided_usd,
            "local_share": self.local_share,
            "off_cloud_share": self.off_cloud_share,
            "prefill_saved_tokens": self.prefill_saved_tokens,
        }

    @classmethod
    def of(cls, records: Iterable[LedgerRecord]) -> Totals:
        """Fold records into totals, as the store's SQL does."""
        return cls.fold((record, 1) for record in records)

    @classmethod
    def fold(cls, parts: Iterable[tuple[Counted, int]]) -> Totals:
        """Fold parts into totals: each a record, or a rollup of ``count`` records that share
        a route, a status and whether they are requests, with their token and cost sums."""
        requests = local = lan = cloud = errors = refused = prompt = completion = saved = 0
        spend = avoided = 0.0
        for part, count in parts:
            prompt += part.prompt_tokens
            completion += part.completion_tokens
            spend += part.cloud_cost_usd or 0.0
            avoided += part.cost_avoided_usd or 0.0
            if part.route == "local":
                saved += part.cache_read_tokens
            if part.is_request:
                requests += count
                local += count * (part.route == "local")
                lan += count * (part.route == "lan")
                cloud += count * (part.route == "cloud")
                errors += count * (part.status == "error")
                refused += count * (part.status == "refused")
        return cls(
            requests=requests,
            local=local,
            cloud=cloud,
            errors=errors,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cloud_spend_usd=spend,
            cost_avoided_usd=avoided,
            refused=refused,
            prefill_saved_tokens=saved,
            lan=lan,
        )

    def plus(self, other: Totals) -> Totals:
        """Return the sum of two totals (of disjoint record sets)."""
        return Totals(
            requests=self.requests + other.requests,
            local=self.local + other.local,
            cloud=self.cloud + other.cloud,
            errors=self.errors + other.errors,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cloud_spend_usd=self.cloud_spend_usd + other.cloud_spend_usd,
            cost_avoided_usd=self.cost_avoided_usd + other.cost_avoided_usd,
            refused=self.refused + other.refused,
            prefill_saved_tokens=self.prefill_saved_tokens + other.prefill_saved_tokens,
            lan=self.lan + other.lan,
        )


@dataclass(frozen=True)
class Latency:
    """Latency and time-to-first-token percentiles, in seconds (None with no samples).

    Attributes:
        samples: Requests measured (those that finished ``ok``).
        p50_s: Median latency.
        p95_s: 95th-percentile latency.
        ttft_p50_s: Median time to first token.
        ttft_p95_s: 95th-percentile time to first token.
    """

    samples: int = 0
    p50_s: float | None = None
    p95_s: float | None = None
    ttft_p50_s: float | None = None
    ttft_p95_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON object ``hybrid stats --json`` prints."""
        return {
            "samples": self.samples,
            "p50_s": self.p50_s,
            "p95_s": self.p95_s,
            "ttft_p50_s": self.ttft_p50_s,
            "ttft_p95_s": self.ttft_p95_s,
        }

    @classmethod
    def of(cls, records: Iterable[LedgerRecord]) -> Latency:
        """Measure records, keeping requests that finished ``ok`` (percentiles from buckets)."""
        answered = [r for r in records if r.is_request and r.status == "ok"]
        return cls.from_histograms(
            Histogram.of(r.latency_s for r in answered),
            Histogram.of(r.ttft_s for r in answered if r.ttft_s is not None),
        )

    @classmethod
    def from_histograms(cls, latency: Histogram, ttft: Histogram) -> Latency:
        """Read the percentiles from histograms (see :mod:`hybrid.ledger.histogram`).

        Args:
            latency: The latencies of the answered requests.
            ttft: The TTFT of those that had one.
        """
        return cls(
            samples=latency.samples,
            p50_s=latency.percentile(50),
            p95_s=latency.percentile(95),
            ttft_p50_s=ttft.percentile(50),
            ttft_p95_s=ttft.percentile(95),
        )

    @classmethod
    def from_samples(cls, latencies: Sequence[float], ttfts: Sequence[float]) -> Latency:
        """Build from raw samples, with exact nearest-rank percentiles.

        Args:
            latencies: One latency per answered request.
            ttfts: The TTFT of those that had one.
        """
        ordered, ordered_ttft = sorted(latencies), sorted(ttfts)
        return cls(
            samples=len(ordered),
            p50_s=percentile(ordered, 50),
            p95_s=percentile(ordered, 95),
            ttft_p50_s=percentile(ordered_ttft, 50),
            ttft_p95_s=percentile(ordered_ttft, 95),
        )


def percentile(ordered: Sequence[float], percent: float) -> float | None:
    """Return the nearest-rank percentile of sorted values.

    Args:
        ordered: The values, sorted ascending.
        percent: In (0, 100].

    Returns:
        The smallest value with at least ``percent`` % of the values at or below it; None for
        no values.
    """
    if not ordered:
        return None
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def reason_label(reason: str | None) -> str:
    """Return a reason without its measurement: the group ``--by reason`` puts it in.

    ``difficulty:0.21<=0.52`` -> ``difficulty``, ``capacity:cpu_91%>85%`` -> ``capacity:cpu``,
    ``capacity:queue_full:3`` -> ``capacity:queue_full``, ``privacy:email`` unchanged; each
    stage of a two-stage reason alike: ``difficulty:0.18~probe:0.52<=0.61`` ->
    ``difficulty~probe``, ``difficulty:0.05<=0.50~probe_unavailable:busy`` ->
    ``difficulty~probe_unavailable:busy``; None or an empty reason -> ``none``.
    """
    if not reason:
        return NO_REASON
    return "~".join(_MEASUREMENT.sub("", part) or part for part in reason.split("~"))


def day_label(time: float) -> str:
    """Return the UTC day of a Unix time as ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(time, tz=UTC).strftime("%Y-%m-%d")


def group_key(record: LedgerRecord, by: GroupBy) -> str:
    """Return the group a record falls in; a record is in exactly one group.

    Args:
        record: The record.
        by: ``route``, ``model`` (the model that answered), ``reason`` (the deciding reason,
            see :func:`reason_label`), ``day`` (UTC) or ``decided`` (who chose the route:
            ``router``, ``client``, ``mode``, or ``none``) or ``instance`` (the daemon that
            wrote it, ``ledger.instance``).
    """
    if by == "route":
        return record.route
    if by == "model":
        return record.model
    if by == "reason":
        return reason_label(record.reasons[0] if record.reasons else None)
    if by == "decided":
        return record.decided or NO_DECIDER
    if by == "instance":
        return record.instance
    return day_label(record.time)


def order_groups(
    groups: Iterable[tuple[str, Totals, Latency]], by: GroupBy
) -> list[tuple[str, Totals, Latency]]:
    """Order groups for display: days oldest first, anything else busiest first."""
    if by == "day":
        return sorted(groups, key=lambda group: group[0])
    return sorted(groups, key=lambda group: (-group[1].requests, group[0]))


def grouped(records: Iterable[LedgerRecord], by: GroupBy) -> list[tuple[str, Totals, Latency]]:
    """Fold records into one (key, totals, latency) per group, as the store's SQL does."""
    buckets: dict[str, list[LedgerRecord]] = {}
    for record in records:
        buckets.setdefault(group_key(record, by), []).append(record)
    groups = [(key, Totals.of(items), Latency.of(items)) for key, items in buckets.items()]
    return order_groups(groups, by)
