"""The router's vocabulary: what a policy sees, what it says, and what the chain decides.

A :class:`Policy` looks at a :class:`RouteContext` and returns a :class:`Verdict`: ``local``,
``cloud`` or ``pass`` (no opinion), with a short reason code.  The :class:`Router` asks every
enabled policy, in order, and the first one with an opinion decides; all verdicts are kept so
that ``hybrid route`` can show each policy's view.  A privacy verdict also *pins* the request:
whatever later policies say, it stays on this machine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from hybrid.generation import Message
from hybrid.hardware.snapshot import LiveSample

Outcome = Literal["local", "cloud", "pass"]


@dataclass(frozen=True)
class LocalStatus:
    """The local model as the router sees it.

    Attributes:
        state: ``ready``, ``loading``, ``unloaded``, ``failed`` or ``closed``.
        context_length: Tokens its context holds (None until loaded).
        queue_depth: Requests waiting or running.
        expected_wait_s: Estimated wait before a new request starts (for an unloaded model,
            its reload).
        decode_tokens_per_s: Decode speed of one answer alone, measured on this machine
            (None before any).
        prefill_tokens_per_s: Prompt-processing speed measured on this machine (None before any).
        supports: What the local model can do beyond text (e.g. ``tools``).
        slots: Answers the local model decodes at once, in one batch.
        running: Answers it is decoding now.
        stream_decode_tokens_per_s: Decode speed of one answer in the batch a new request
            would join (:attr:`batch_size`), measured or estimated on this machine (None
            before any).
    """

    state: str
    context_length: int | None = None
    queue_depth: int = 0
    expected_wait_s: float = 0.0
    decode_tokens_per_s: float | None = None
    prefill_tokens_per_s: float | None = None
    supports: frozenset[str] = frozenset()
    slots: int = 1
    running: int = 0
    stream_decode_tokens_per_s: float | None = None

    @property
    def batch_size(self) -> int:
        """Answers decoding together once a new request starts: see :func:`joined_batch`."""
        return joined_batch(self.slots, self.running)


def joined_batch(slots: int, running: int) -> int:
    """The batch a request submitted now decodes in: itself beside those running, at most
    ``slots`` (when every slot is taken it starts as one frees, in a full batch).

    Args:
        slots: Answers the model decodes at once (below 1 counts as 1).
        running: Answers decoding now.
    """
    return min(max(slots, 1), max(running, 0) + 1)


@dataclass(frozen=True)
class RouteContext:
    """Everything the policies need to know about one request.

    Attributes:
        messages: The conversation (empty for a raw completion).
        text: All text a detector should see (messages, or the raw prompt).
        prompt_tokens: The prompt's length in the local tokenizer's tokens, when known (a
            lower bound for a prompt refused by its size without being tokenized).
        max_tokens: Output tokens requested (or the local default): the room the answer needs.
        expected_tokens: Output tokens the answer is expected to take: ``max_tokens`` when
            the client set one, else the typical answer length seen on this machine.
        needs: Capabilities the request needs beyond text: ``images``, ``audio``, ``tools``.
        local: The local model's status.
        load: The latest live hardware sample, when the sampler runs.
        options: The closed set of answers the request offers its answer (lettered options,
            yes or no, true or false: :func:`~hybrid.routing.choices.options_of`); None when it
            offers none.
    """

    messages: tuple[Message, ...]
    text: str
    prompt_tokens: int | None
    max_tokens: int
    local: LocalStatus
    expected_tokens: int | None = None
    needs: frozenset[str] = frozenset()
    load: LiveSample | None = None
    options: frozenset[str] | None = None


@dataclass(frozen=True)
class Verdict:
    """One policy's view of a request.

    Attributes:
        policy: The policy's name.
        outcome: ``local``, ``cloud`` or ``pass`` (no opinion).
        reason: A short code for ``X-Hybrid-Reason`` (``privacy:email``, ``length:9312>8192``).
        score: The policy's score, when it has one (difficulty).
        pin: The request must not leave this machine (privacy).
    """

    policy: str
    outcome: Outcome
    reason: str
    score: float | None = None
    pin: bool = False


@dataclass(frozen=True)
class RouteDecision:
    """Where a request goes and why.

    Attributes:
        target: ``local`` or ``cloud``.
        reasons: The deciding reason first, then the others that had an opinion.
        score: The difficulty score, when the difficulty policy ran.
        pinned: Private data: the request must not leave this machine.
        verdicts: Every policy's verdict, in chain order.
    """

    target: Literal["local", "cloud"]
    reasons: tuple[str, ...]
    score: float | None = None
    pinned: bool = False
    verdicts: tuple[Verdict, ...] = field(default=())

    @property
    def reason(self) -> str:
        """The deciding reason."""
        return self.reasons[0]


class Policy(ABC):
    """One question the router asks about a request."""

    name: str = "policy"
    #: The policy can pin a request to this machine; such policies run even when the route is
    #: already fixed to the cloud, since a pin overrides it.
    pins: bool = False

    @abstractmethod
    def evaluate(self, context: RouteContext) -> Verdict:
        """Judge a request.

        Args:
            context: The request and the machine's state.

        Returns:
            ``local`` or ``cloud`` with a reason, or ``pass`` when this policy has no opinion.
        """

    def verdict(self, outcome: Outcome, reason: str, *, score: float | None = None) -> Verdict:
        """A verdict signed by this policy."""
        return Verdict(self.name, outcome, reason, score=score)

    def abstain(self, reason: str = "") -> Verdict:
        """No opinion."""
        return Verdict(self.name, "pass", reason or f"{self.name}:pass")


class Router:
    """Runs the policies in order; the first with an opinion decides, privacy pins.

    Args:
        policies: The enabled policies, in chain order.
        default: Where a request goes when no policy has an opinion.
    """

    def __init__(self, policies: Sequence[Policy], *, default: Literal["local", "cloud"] = "local"):
        self._policies = tuple(policies)
        self._default = default

    @property
    def policies(self) -> tuple[Policy, ...]:
        """The chain, in order."""
        return self._policies

    def decide(self, context: RouteContext, *, pins_only: bool = False) -> RouteDecision:
        """Ask every policy and decide.

        Args:
            context: The request and the machine's state.
            pins_only: Ask only the policies that can pin a request to this machine (the
                route is fixed otherwise, so the others' opinions would not count).

        Returns:
            The decision, with every verdict asked for.
        """
        policies = [p for p in self._policies if p.pins] if pins_only else self._policies
        verdicts = tuple(policy.evaluate(context) for policy in policies)
        score = next((v.score for v in verdicts if v.score is not None), None)
        pinned = any(v.pin for v in verdicts)
        opinions = [v for v in verdicts if v.outcome != "pass"]
        if pinned:
            first = next(v for v in verdicts if v.pin)
            others = tuple(v.reason for v in opinions if v is not first)
            return RouteDecision("local", (first.reason, *others), score, True, verdicts)
        if not opinions:
            return RouteDecision(self._default, ("policies:pass",), score, False, verdicts)
        first = opinions[0]
        others = tuple(v.reason for v in opinions[1:])
        target: Literal["local", "cloud"] = "cloud" if first.outcome == "cloud" else "local"
        return RouteDecision(target, (first.reason, *others), score, False, verdicts)
