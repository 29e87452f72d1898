"""The judge of shadow sampling: a cloud model that says whether a local answer is right.

With ``routing.learn.judge_model`` set, :class:`~hybrid.routing.shadow.Shadowing` asks that model
to read the question, the cloud answer as the reference and the local answer, and to reply
``yes`` or ``no`` (:func:`judge_request`); :func:`read_verdict` reads the reply, and one it cannot
read leaves the word-overlap grade (:mod:`hybrid.routing.agreement`) standing.
"""

from __future__ import annotations

from hybrid.generation import GenerationRequest, Message, SamplingParams
from hybrid.routing.agreement import asked, words

JUDGE_MAX_TOKENS = 4

_JUDGE_PROMPT = """\
You grade answers. Here is a question, a reference answer, and a candidate answer.

Question:
{question}

Reference answer:
{reference}

Candidate answer:
{candidate}

Is the candidate answer correct, and does it agree with the reference? Reply with one word: \
yes or no."""


def judge_request(
    request: GenerationRequest, local: str, cloud: str, model: str
) -> GenerationRequest:
    """The request that asks a judge model to grade a local answer.

    Args:
        request: The client's request (its last user message, or prompt, is the question).
        local: The local answer (the candidate).
        cloud: The cloud answer (the reference).
        model: The judge's model id at its provider.

    Returns:
        A short, greedy request for a one-word verdict.
    """
    text = _JUDGE_PROMPT.format(question=asked(request), reference=cloud, candidate=local)
    return GenerationRequest(
        request_id=request.request_id,
        messages=(Message("user", text),),
        params=SamplingParams(max_tokens=JUDGE_MAX_TOKENS, temperature=0.0),
        model=model,
    )


def read_verdict(text: str) -> bool | None:
    """A judge's ``yes`` (True) or ``no`` (False); None when it said neither first."""
    found = words(text)
    if not found:
        return None
    return {"yes": True, "no": False}.get(found[0])
