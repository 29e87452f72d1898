"""The cascade: answer locally first, and escalate when the model itself is unsure.

Confidence is the geometric mean of the probabilities of the tokens the local model chose
(``exp`` of their mean log-probability): a model that hesitates over its own words tends to be
wrong.  Only whole (non-streamed) answers are cascaded, since a streamed answer cannot be taken
back once its first tokens reached the client.
"""

from __future__ import annotations

import dataclasses
import math

from hybrid.backend import Generation, collect
from hybrid.generation import GenerationEvent, GenerationRequest


@dataclasses.dataclass(frozen=True)
class LocalAttempt:
    """A local answer, read whole, and how sure the model was of it.

    Attributes:
        events: The answer's events, to replay to the client if it stands.
        confidence: The geometric mean token probability, in [0, 1] (1 for an empty answer).
    """

    events: tuple[GenerationEvent, ...]
    confidence: float


def with_logprobs(request: GenerationRequest) -> GenerationRequest:
    """The request, asking for the chosen tokens' log-probabilities if it did not already."""
    if request.params.top_logprobs is not None:
        return request
    params = dataclasses.replace(request.params, top_logprobs=0)
    return dataclasses.replace(request, params=params)


async def attempt(generation: Generation, *, keep_logprobs: bool) -> LocalAttempt:
    """Read a local generation whole and measure its confidence.

    Args:
        generation: The started local generation (asked with log-probabilities).
        keep_logprobs: The client asked for log-probabilities; otherwise they are dropped.

    Returns:
        The answer's events and its confidence.
    """
    completion = await collect(generation)
    logprobs = [lp.logprob for lp in completion.logprobs]
    confidence = math.exp(sum(logprobs) / len(logprobs)) if logprobs else 1.0
    # events() keeps the answer's tool calls, not only its text.
    return LocalAttempt(completion.events(logprobs=keep_logprobs), confidence)
