"""The cascade: answer locally first, and escalate when the model itself is unsure.

Three readings of the local answer decide (:meth:`Cascade.verdict`):

- *Declined*: the answer opens by declining ("I'm sorry, I can't answer this question.", "I don't
  know."). A small model often declines what it cannot do, fluently and confidently, so its
  token probabilities miss it; a declining answer is no answer, and the cloud answers instead.
- *Outside the options*: the prompt offers a closed set of answers (lettered options on their
  own lines, "yes or no", "true or false") and the answer opens with none of them
  (:mod:`hybrid.routing.choices`).  A small model asked to pick often answers with something
  else (a remark, a word from an option's text, a letter that was not offered), and such an
  answer is wrong whatever its confidence.
- *Confidence*: the geometric mean of the probabilities of the tokens the local model chose
  (``exp`` of their mean log-probability): a model that hesitates over its own words tends to be
  wrong.  Not for an answer of yes or no to a question asking for one: a guess is right half the
  time, and there the model's confidence does not tell right from wrong.

A streamed answer cannot be taken back once its first tokens reached the client, so only its
opening is read before it is sent (:func:`read_opening`: the first :data:`OPENING_WORDS` words,
or :data:`OPENING_CHARS` characters of text with few spaces, such as Chinese or minified JSON),
and every reading is of that opening (:func:`opening_attempt`): a stream is discarded when it
opens by declining or with none of the offered answers, or when the model was unsure of its
opening's tokens.  Of the router evaluation's answers, 82-96 % are no longer than an opening,
so for those a stream is read whole (``docs/router-eval.md``, *The cascade on local answers*).

A discarded answer read to its end is kept (:class:`Discarded`): when its escalation fails and
the local model answers instead, it is that answer, given as read, not generated a second time.
A longer stream is closed before the escalation, and such a fallback generates another: the
local engine cannot pause a generation (it runs on to its end into an unbounded channel,
holding one of the local model's slots), so keeping it would spend that slot, for as long as
the cloud takes to answer or to fail (its retries included), on an answer thrown away whenever
the cloud does answer; generated twice is the opening only, at most :data:`OPENING_WORDS` words.
"""

from __future__ import annotations

import dataclasses
import math
import re
import unicodedata
from collections.abc import AsyncIterator, Iterable, Sequence

from hybrid.backend import (
    Generation,
    ObservedGeneration,
    ReplayGeneration,
    ResumedGeneration,
    close_events,
    collect,
    prompt_tokens_of,
)
from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    TextDelta,
    ToolCallDelta,
)
from hybrid.routing.answer import Answer, DiscardedLeg, PartialAnswer
from hybrid.routing.choices import TWO_WAY, outside

DECLINED = "cascade:declined"
"""The reason a local answer that declined is discarded with."""

OUTSIDE_OPTIONS = "cascade:outside_options"
"""The reason a local answer that is none of the answers its prompt offered is discarded with."""

YES_NO = "yes_no"
"""The verdict's mark for an answer to a yes-or-no question, which stands whatever the model's
confidence (:meth:`Cascade.verdict`)."""

OPENING_WORDS = 8
"""Words of a streamed answer read before it is sent: enough for "I'm sorry, but I am not sure"."""

OPENING_CHARS = 64
"""Characters of a streamed answer read before it is sent, when they come before
:data:`OPENING_WORDS` words do: text without spaces between its words (Chinese, Japanese, Thai,
minified JSON) has no eighth word, and would otherwise be read whole before its first byte is
sent.  Eight words of English run to 40-50 characters, so an English opening still ends at its
eighth word; 64 holds the longest declining opening :func:`declined` knows within eight words
("Je suis désolée, mais en tant qu'intelligence artificielle", 58 characters).  A wide
character (Chinese, Japanese, Korean: two columns in a terminal) counts as two, since it says
about as much as two Latin letters or more: such an opening ends at its 33rd."""

_DECLINING = re.compile(
    r"""^\W*
    (?:(?:i'?m|i\s+am)\s+sorry|sorry|apologies|unfortunately)?  # an apology, or none
    [\s,.!;:-]*(?:but\s+)?
    (?:
        i\s*(?:can'?t|cannot|can\s+not|am\s+unable|'?m\s+unable|am\s+not\s+able|'?m\s+not\s+able
            |don'?t\s+know|do\s+not\s+know|don'?t\s+understand|do\s+not\s+understand
            |don'?t\s+have|do\s+not\s+have|am\s+not\s+sure|'?m\s+not\s+sure)
        (?!\s+(?:wait|believe|stop|help\s+but))\b  # "I can't wait to ...", ... are answers
      | as\s+an\s+ai\b
    )
    """,
    re.IGNORECASE | re.VERBOSE,
)
# The same shape in French, Spanish, German, Portuguese and Italian.
_DECLINING_ELSEWHERE = re.compile(
    r"""^\W*
    (?:(?:je\s+suis\s+)?d[ée]sol[ée]e?|lo\s+(?:siento|lamento)|disculp[ae]|perd[oó]n
      |es\s+tut\s+mir\s+leid|entschuldigung|leider|desculp[ae]|sinto\s+muito|infelizmente
      |mi\s+dispiace|purtroppo|scusa(?:te)?)?  # an apology, or none
    [\s,.!;:-]*(?:mais\s+|pero\s+|aber\s+|mas\s+|ma\s+)?
    (?:
        je\s+ne\s+(?:peux|sais|comprends|suis\s+pas\s+s[ûu]re?)\b(?!\s+pas\s+attendre)
      | en\s+tant\s+qu'\s*(?:ia|intelligence\s+artificielle)\b
      | no\s+(?:puedo|s[ée]|entiendo|tengo|estoy\s+segur[oa])\b(?!\s+esperar)
      | como\s+(?:una\s+)?(?:ia|inteligencia\s+artificial)\b
      | ich\s+(?:kann|weiß|weiss|verstehe|habe)\s+(?:(?:das|es|dir|ihnen|dabei|leider|keinen)\s+)*
          (?:nicht|keinen\s+zugang)\b
      | ich\s+bin\s+mir\s+nicht\s+sicher\b
      | als\s+(?:eine\s+)?ki\b
      | n[ãa]o\s+(?:posso|sei|consigo|entendo|tenho)\b(?!\s+esperar)
      | non\s+(?:posso|so|capisco|ho\s+accesso|sono\s+sicur[oa])\b(?!\s+aspettare)
      | come\s+(?:un'\s*)?ia\b
    )
    """,
    re.IGNORECASE | re.VERBOSE,
)


def declined(text: str) -> bool:
    """Whether an answer opens by declining the request.

    An optional apology ("I'm sorry", "Sorry,", "Unfortunately"), then "I can't / cannot / am
    unable / am not able / don't know / don't understand / don't have / am not sure", or "As an
    AI"; and the same in French, Spanish, German, Portuguese and Italian ("Je ne sais pas",
    "Lo siento, no puedo", "Es tut mir leid, ich kann das nicht", "Não sei", "Mi dispiace, non
    posso"). "I'm sorry to hear that" and "I can't wait to see it" are answers, not refusals.
    """
    text = text.replace("\u2019", "'")
    return _DECLINING.match(text) is not None or _DECLINING_ELSEWHERE.match(text) is not None


@dataclasses.dataclass(frozen=True)
class LocalAttempt:
    """A local answer, read whole, and how sure the model was of it.

    Attributes:
        events: The answer's events, to replay to the client if it stands.
        confidence: The geometric mean token probability, in [0, 1] (1 for an empty answer).
        declined: The answer opens by declining the request (:func:`declined`).
        outside: The answer is none of the answers its prompt offered
            (:func:`~hybrid.routing.choices.outside`).
        opening: Only the opening of a streamed answer was read (:func:`opening_attempt`).
        yes_no: The prompt asked for yes or no, or true or false
            (:data:`~hybrid.routing.choices.TWO_WAY`), and a text answer was given.
    """

    events: tuple[GenerationEvent, ...]
    confidence: float
    declined: bool = False
    outside: bool = False
    opening: bool = False
    yes_no: bool = False

    def whole(self, *, logprobs: bool) -> tuple[GenerationEvent, ...] | None:
        """The whole answer's events, to give as they were read (a local fallback after a
        failed escalation); None when only a stream's opening was read and more was to come.

        Args:
            logprobs: Keep the text deltas' log-probabilities (False: the client did not ask
                for them; a whole answer read by :func:`attempt` dropped them already).
        """
        if not self.events or not isinstance(self.events[-1], GenerationDone):
            return None
        if logprobs:
            return self.events
        kept: list[GenerationEvent] = []
        for event in self.events:
            if isinstance(event, TextDelta) and event.logprobs:
                if not event.text:
                    continue  # it only carried log-probabilities
                event = TextDelta(event.text)
            kept.append(event)
        return tuple(kept)


@dataclasses.dataclass(frozen=True)
class Cascade:
    """When a whole local answer is discarded for the cloud's.

    Attributes:
        min_confidence: Below this confidence the local answer is discarded.
        escalate_declined: A declining answer is discarded whatever its confidence.
        escalate_outside_options: An answer that is none of the answers its prompt offered is
            discarded whatever its confidence.
    """

    min_confidence: float
    escalate_declined: bool = True
    escalate_outside_options: bool = True

    def verdict(self, tried: LocalAttempt) -> tuple[bool, str]:
        """Whether the local answer stands, and the reason to record (``cascade:0.88>=0.35``,
        ``cascade:0.28<0.35``, ``cascade:declined``, ``cascade:outside_options``; a stream's
        opening ``cascade:opening:0.88>=0.35``).

        An answer to a question asking for yes or no (or true or false) that gives one of them
        stands however sure the model was (``cascade:yes_no:0.28``): a guess is right half the
        time, and on such questions the model's confidence did not tell its right answers from
        its wrong ones (``docs/router-eval.md``, *Yes or no*).
        """
        if self.escalate_declined and tried.declined:
            return False, DECLINED
        if self.escalate_outside_options and tried.outside:
            return False, OUTSIDE_OPTIONS
        read = "cascade:opening:" if tried.opening else "cascade:"
        if tried.yes_no and not tried.outside:
            return True, f"{read}{YES_NO}:{tried.confidence:.2f}"
        if tried.confidence >= self.min_confidence:
            return True, f"{read}{tried.confidence:.2f}>={self.min_confidence:g}"
        return False, f"{read}{tried.confidence:.2f}<{self.min_confidence:g}"

    async def read(
        self,
        local: Answer,
        *,
        stream: bool,
        logprobs: bool,
        options: frozenset[str] | None = None,
    ) -> Answer | Discarded:
        """Read a started local answer, whole or as far as a stream's opening, and judge it.

        Args:
            local: The local answer, asked with log-probabilities (:func:`with_logprobs`).
            stream: Read only the opening (:func:`read_opening`); a stream that stands goes
                on from there.
            logprobs: The client asked for log-probabilities; otherwise they are dropped.
            options: The closed set of answers the request offered
                (:func:`~hybrid.routing.choices.options_of`); None when it offered none.

        Returns:
            The answer to send when it stands, its reason ending in the verdict; otherwise the
            discarded answer, closed.

        Raises:
            BaseException: What ended the read (its client left: ``CancelledError``; the local
                model failed: ``GenerationError``), with what was read noted on it
                (:meth:`~hybrid.routing.answer.PartialAnswer.note`), for the ledger to count;
                the answer is closed.
        """
        if stream:
            return await self._read_opening(local, logprobs, options)
        tally = Tally()
        try:
            tried = await attempt(
                local.generation, keep_logprobs=logprobs, tally=tally, options=options
            )
        except BaseException as exc:
            _partial(local, tally).note(exc)
            raise  # read by collect(), which closed it
        stands, verdict = self.verdict(tried)
        if stands:
            whole = ReplayGeneration(tried.events)
            return dataclasses.replace(local, generation=whole, reason=f"{local.reason};{verdict}")
        done = tried.events[-1]
        usage = done.usage if isinstance(done, GenerationDone) else None
        leg = DiscardedLeg(
            local.model,
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
            verdict,
        )
        return Discarded(leg, tried.whole(logprobs=logprobs))

    async def _read_opening(
        self, local: Answer, logprobs: bool, options: frozenset[str] | None
    ) -> Answer | Discarded:
        """:meth:`read` of a stream: a stream that stands goes on from where it was read (the
        client gets every event, with log-probabilities only if it asked for them; if it did
        not, the local model is told to compute no more: :meth:`Generation.stop_logprobs`)."""
        events = aiter(local.generation)
        tally = Tally()
        try:
            tried = opening_attempt(await read_opening(events, tally=tally), options)
        except BaseException as exc:
            _partial(local, tally).note(exc)
            await close_events(events)
            await local.generation.aclose()
            raise
        stands, verdict = self.verdict(tried)
        if stands:
            resumed = ResumedGeneration(local.generation, events, tried.events, logprobs=logprobs)
            if not logprobs and not resumed.finished:
                # Asked for only to weigh the opening: the rest would be computed to be dropped.
                local.generation.stop_logprobs()
            reason = f"{local.reason};{verdict}"
            return dataclasses.replace(local, generation=resumed, reason=reason)
        await close_events(events)
        await local.generation.aclose()
        prompt_tokens = prompt_tokens_of(local.generation) or 0
        leg = DiscardedLeg(local.model, prompt_tokens, generated(tried.events), verdict)
        return Discarded(leg, tried.whole(logprobs=logprobs))


@dataclasses.dataclass(frozen=True)
class Discarded:
    """A local answer the cascade discarded, for the escalation that replaces it.

    Attributes:
        leg: It, for the ledger.
        whole: Its events as the client would get them, when it was read to its end: a local
            fallback after a failed escalation gives them; None when only a stream's opening
            was read (the module docstring says why the rest was not kept).
    """

    leg: DiscardedLeg
    whole: tuple[GenerationEvent, ...] | None


def confidence(logprobs: Sequence[float]) -> float:
    """How sure the model was of an answer: the geometric mean of its tokens' probabilities
    (``exp`` of their mean log-probability), in [0, 1]; 1 for an answer of no token."""
    return math.exp(sum(logprobs) / len(logprobs)) if logprobs else 1.0


def generated(events: Iterable[GenerationEvent]) -> int:
    """Tokens a local answer's events hold: the embedded backend streams a text piece per
    token, with its log-probability (asked for: :func:`with_logprobs`); a delta that carries
    several (a tool call's text, released at once) counts each."""
    return sum(max(1, len(event.logprobs)) for event in events if isinstance(event, TextDelta))


@dataclasses.dataclass
class Tally:
    """The tokens of a local answer read so far (:func:`generated`), counted as the reader
    reads: what was generated when the read is cut short (its client left, the local model
    failed) is known."""

    tokens: int = 0

    def add(self, event: GenerationEvent) -> None:
        """Count one event read."""
        self.tokens += generated((event,))


class Tallied(ObservedGeneration):
    """A generation whose events are counted in a :class:`Tally` as they are read."""

    def __init__(self, inner: Generation, tally: Tally) -> None:
        super().__init__(inner)
        self._tally = tally

    async def _observe(self, event: GenerationEvent) -> None:
        self._tally.add(event)


def _partial(local: Answer, tally: Tally) -> PartialAnswer:
    """What was read of a local answer when its read ended before its verdict."""
    return PartialAnswer(prompt_tokens_of(local.generation), tally.tokens)


def with_logprobs(request: GenerationRequest) -> GenerationRequest:
    """The request, asking for the chosen tokens' log-probabilities if it did not already."""
    if request.params.top_logprobs is not None:
        return request
    params = dataclasses.replace(request.params, top_logprobs=0)
    return dataclasses.replace(request, params=params)


def _width(text: str) -> int:
    """The characters of a text, a wide one (Chinese, Japanese, Korean) counted as two
    (:data:`OPENING_CHARS`)."""
    return len(text) + sum(unicodedata.east_asian_width(char) in "WF" for char in text)


def within_opening(text: str) -> bool:
    """Whether a whole answer is no longer than a stream's opening (:func:`read_opening`): a
    stream of it is read to its end before it is sent."""
    return len(text.split()) <= OPENING_WORDS and _width(text) <= OPENING_CHARS


async def read_opening(
    events: AsyncIterator[GenerationEvent],
    *,
    words: int = OPENING_WORDS,
    chars: int = OPENING_CHARS,
    tally: Tally | None = None,
) -> tuple[GenerationEvent, ...]:
    """Read a streamed answer's first events: until its text holds more than ``words`` words
    (the last of them complete) or more than ``chars`` characters (a wide one counted as two),
    or a tool call or the end arrives.

    Args:
        events: The answer's iteration, left where the read stops (to be resumed:
            :class:`~hybrid.backend.ResumedGeneration`).
        words: Words to read.
        chars: Characters to read, for text with fewer spaces than words.
        tally: Counts the tokens as they are read, should the read be cut short.

    Returns:
        The events read, in order.
    """
    read: list[GenerationEvent] = []
    text = ""
    width = 0
    while len(text.split()) <= words and width <= chars:
        try:
            event = await anext(events)
        except StopAsyncIteration:
            break
        read.append(event)
        if tally is not None:
            tally.add(event)
        if not isinstance(event, TextDelta):
            break
        text += event.text
        width += _width(event.text)
    return tuple(read)


def opening_text(events: tuple[GenerationEvent, ...]) -> str:
    """The text of the events :func:`read_opening` read."""
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def opening_attempt(
    events: tuple[GenerationEvent, ...], options: frozenset[str] | None = None
) -> LocalAttempt:
    """The events :func:`read_opening` read, with the confidence of their tokens (the
    stream asked with log-probabilities: :func:`with_logprobs`), whether they decline, and
    whether they are none of ``options`` (:func:`~hybrid.routing.choices.outside`; an opening
    with a tool call is not: only text answers are read for it)."""
    logprobs = [
        lp.logprob for event in events if isinstance(event, TextDelta) for lp in event.logprobs
    ]
    text = opening_text(events)
    calls = any(isinstance(event, ToolCallDelta) for event in events)
    return LocalAttempt(
        events,
        confidence(logprobs),
        declined(text),
        outside=not calls and outside(text, options),
        opening=True,
        yes_no=not calls and options in TWO_WAY,
    )


async def attempt(
    generation: Generation,
    *,
    keep_logprobs: bool,
    tally: Tally | None = None,
    options: frozenset[str] | None = None,
) -> LocalAttempt:
    """Read a local generation whole, measure its confidence, and see whether it declines or
    is none of the answers its prompt offered.

    Args:
        generation: The started local generation (asked with log-probabilities).
        keep_logprobs: The client asked for log-probabilities; otherwise they are dropped.
        tally: Counts the tokens as they are read, should the read be cut short.
        options: The closed set of answers the prompt offered
            (:func:`~hybrid.routing.choices.options_of`); None when it offered none.  An
            answer that calls tools is not read for it.

    Returns:
        The answer's events, its confidence, whether it declines, and whether it is outside
        the options.
    """
    completion = await collect(generation if tally is None else Tallied(generation, tally))
    sure = confidence([lp.logprob for lp in completion.logprobs])
    text = completion.text
    chose = not completion.tool_calls and outside(text, options)
    # events() keeps the answer's tool calls, not only its text.
    events = completion.events(logprobs=keep_logprobs)
    yes_no = not completion.tool_calls and options in TWO_WAY
    return LocalAttempt(events, sure, declined(text), outside=chose, yes_no=yes_no)
