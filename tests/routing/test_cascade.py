"""What the cascade reads in a local answer: whether it declines, the verdict, a stream's
opening, read ahead and then resumed, and what was read when the read is cut short."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import pytest

from hybrid.backend import Completion, Generation, ReplayGeneration, ResumedGeneration, collect
from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    Usage,
)
from hybrid.routing.answer import Answer, PartialAnswer, partial_before
from hybrid.routing.cascade import (
    OPENING_WORDS,
    Cascade,
    LocalAttempt,
    Tallied,
    Tally,
    attempt,
    confidence,
    declined,
    opening_attempt,
    opening_text,
    read_opening,
)


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, I can't answer this question.",
        "I\u2019m sorry, but I don\u2019t know.",
        "I am sorry. I cannot help with that.",
        "Sorry, I don't understand.",
        "I don't know.",
        "I do not have access to the internet.",
        "I'm not sure.",
        "Unfortunately, I am unable to do that.",
        "As an AI, I have no opinions.",
        '"I can\'t answer that."',
        "Je ne sais pas.",
        "Désolé, je ne peux pas répondre.",
        "En tant qu\u2019IA, je n\u2019ai pas d\u2019avis.",
        "Lo siento, no puedo ayudarte con eso.",
        "No sé.",
        "Como IA, no tengo opiniones.",
        "Es tut mir leid, ich kann das nicht beantworten.",
        "Ich weiß es nicht.",
        "Ich habe keinen Zugang zum Internet.",
        "Als KI habe ich keine Meinung.",
        "Desculpe, não posso ajudar.",
        "Não sei.",
        "Mi dispiace, non posso aiutarti.",
        "Non so.",
    ],
)
def test_an_answer_that_declines_is_recognised(text: str) -> None:
    assert declined(text)


@pytest.mark.parametrize(
    "text",
    [
        "Paris.",
        "I'm sorry to hear that. Here are some things that might help.",
        "I can't wait to see it!",
        "I can play the guitar.",
        "I think the answer is 42.",
        "Yes, I know the answer: 12.",
        "The author says he doesn't know the way.",
        "",
        "No, Paris es la capital.",
        "No puedo esperar a verlo.",
        "Désolé pour le retard, voici la réponse.",
        "Je ne peux pas attendre !",
        "Ich kann dir helfen: die Antwort ist 4.",
        "Ich habe das Buch gelesen.",
        "Leider ist es heute kalt.",
        "Não posso esperar!",
        "Non sono d'accordo.",
        "Non ho mai visto Roma.",
    ],
)
def test_an_answer_is_not_taken_for_a_refusal(text: str) -> None:
    assert not declined(text)


def test_the_verdict_discards_a_declined_answer_before_reading_its_confidence() -> None:
    tried = LocalAttempt((), 0.97, declined=True)
    assert Cascade(0.5).verdict(tried) == (False, "cascade:declined")
    assert Cascade(0.5, escalate_declined=False).verdict(tried) == (True, "cascade:0.97>=0.5")


def test_the_verdict_discards_an_answer_outside_the_options_before_its_confidence() -> None:
    tried = LocalAttempt((), 0.97, outside=True)
    assert Cascade(0.5).verdict(tried) == (False, "cascade:outside_options")
    kept = Cascade(0.5, escalate_outside_options=False).verdict(tried)
    assert kept == (True, "cascade:0.97>=0.5")
    # A declining answer is outside the options too: it is recorded as declining.
    both = LocalAttempt((), 0.97, declined=True, outside=True)
    assert Cascade(0.5).verdict(both) == (False, "cascade:declined")


def test_the_confidence_is_the_geometric_mean_token_probability() -> None:
    assert confidence([math.log(0.5), math.log(0.125)]) == pytest.approx(0.25)
    assert confidence([]) == 1.0


def test_the_verdict_weighs_the_confidence_against_the_minimum() -> None:
    assert Cascade(0.6).verdict(LocalAttempt((), 0.41)) == (False, "cascade:0.41<0.6")
    assert Cascade(0.6).verdict(LocalAttempt((), 0.6)) == (True, "cascade:0.60>=0.6")


class Pieces(Generation):
    """Says each piece in turn, then stops; counts how far it was read, and notes whether it
    was told that the rest needs no log-probabilities."""

    def __init__(self, *pieces: GenerationEvent) -> None:
        self.pieces = pieces
        self.sent = 0
        self.closed = False
        self.logprobs_stopped_at: int | None = None

    def stop_logprobs(self) -> None:
        self.logprobs_stopped_at = self.sent

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        for piece in self.pieces:
            self.sent += 1
            yield piece
        yield GenerationDone("stop", Usage(3, len(self.pieces)))

    async def aclose(self) -> None:
        self.closed = True


def words(text: str) -> list[TextDelta]:
    return [TextDelta(word + " ") for word in text.split()]


def test_the_opening_is_read_until_a_word_past_the_limit() -> None:
    async def scenario() -> tuple[int, str, Completion]:
        generation = Pieces(*words("one two three four five six seven eight nine"))
        events = aiter(generation)
        read = await read_opening(events, words=3)
        sent = generation.sent
        resumed = ResumedGeneration(generation, events, read)
        return sent, opening_text(read), await collect(resumed)

    sent, opening, whole = asyncio.run(scenario())
    assert (sent, opening) == (4, "one two three four ")
    assert whole.text == "one two three four five six seven eight nine "
    assert whole.done.usage == Usage(3, 9)


def read_pieces(*pieces: str) -> tuple[GenerationEvent, ...]:
    async def scenario() -> tuple[GenerationEvent, ...]:
        return await read_opening(aiter(Pieces(*(TextDelta(piece) for piece in pieces))))

    return asyncio.run(scenario())


def test_text_without_spaces_is_read_only_as_far_as_the_opening_s_characters() -> None:
    chinese = "巴黎是法国的首都也是欧洲最重要的文化中心之一。它以埃菲尔铁塔和卢浮宫闻名于世。"
    # A wide character counts as two: 33 of them are past the 64 an opening holds.
    read = read_pieces(*chinese)
    assert opening_text(read) == chinese[:33]
    minified = '{"city":"Paris","country":"France","population":2102650,"area_km2":105.4}'
    read = read_pieces(*(minified[i : i + 3] for i in range(0, len(minified), 3)))
    assert opening_text(read) == minified[:66]
    # An English opening still ends a word past its eighth, well within the characters.
    english = "Paris is the capital of France and one of the most visited cities in Europe"
    read = read_pieces(*(piece.text for piece in words(english)))
    assert opening_text(read) == "Paris is the capital of France and one of "


@pytest.mark.parametrize(
    "opening",
    [
        "Je suis désolée, mais en tant qu'intelligence artificielle",
        "Lo lamento, pero como una inteligencia artificial",
        "I'm sorry, but I do not understand what you mean",
    ],
)
def test_the_longest_declining_openings_are_read_far_enough_to_be_recognised(
    opening: str,
) -> None:
    # Token-sized pieces, then the rest of a long answer.
    pieces = [opening[i : i + 4] for i in range(0, len(opening), 4)]
    read = read_pieces(*pieces, " je ne peux pas répondre à cette question, ni à une autre.")
    assert opening_attempt(read).declined


def test_the_opening_stops_at_a_tool_call_or_the_end() -> None:
    async def scenario(generation: Pieces) -> tuple[GenerationEvent, ...]:
        return await read_opening(aiter(generation))

    call = ToolCallDelta(0, "call_1", "lookup", "{}")
    read = asyncio.run(scenario(Pieces(TextDelta("Let me "), call, TextDelta("more"))))
    assert read == (TextDelta("Let me "), call)
    read = asyncio.run(scenario(Pieces(TextDelta("I don't know."))))
    assert [type(event) for event in read] == [TextDelta, GenerationDone]
    assert opening_text(read) == "I don't know."


def test_a_resumed_generation_read_to_its_end_is_finished_and_closing_one_closes_it() -> None:
    async def scenario() -> tuple[bool, bool, str, bool]:
        short = Pieces(TextDelta("Yes."))
        events = aiter(short)
        whole = ResumedGeneration(short, events, await read_opening(events))
        long = Pieces(*words("a b c d e f g h i j k l"))
        events = aiter(long)
        part = ResumedGeneration(long, events, await read_opening(events))
        await part.aclose()
        with pytest.raises(StopAsyncIteration):  # never handed out: its iteration is closed too
            await anext(events)
        return whole.finished, part.finished, (await collect(whole)).text, long.closed

    assert asyncio.run(scenario()) == (True, False, "Yes.", True)


def sure(*probabilities: float) -> tuple[TokenLogprob, ...]:
    return tuple(TokenLogprob("t", math.log(p), (116,)) for p in probabilities)


def test_a_stream_s_opening_is_weighed_on_its_tokens_and_read_for_declining() -> None:
    opening = (TextDelta("Paris ", sure(0.9, 0.4)), TextDelta("is", sure(0.6)))
    tried = opening_attempt(opening)
    assert tried.events == opening and tried.opening and not tried.declined
    assert tried.confidence == pytest.approx((0.9 * 0.4 * 0.6) ** (1 / 3))
    assert Cascade(0.5).verdict(tried) == (True, "cascade:opening:0.60>=0.5")
    assert Cascade(0.7).verdict(tried) == (False, "cascade:opening:0.60<0.7")
    refusal = opening_attempt((TextDelta("I don't know.", sure(0.99)),))
    assert refusal.declined and Cascade(0.5).verdict(refusal) == (False, "cascade:declined")
    # Nothing to weigh (a tool call first, a backend that gives no log-probabilities).
    call = opening_attempt((ToolCallDelta(0, "call_1", "lookup", "{}"),))
    assert call.confidence == 1.0 and Cascade(0.5).verdict(call)[0]


def test_a_resumed_generation_drops_log_probabilities_asked_only_to_look_at_them() -> None:
    async def scenario(logprobs: bool) -> list[GenerationEvent]:
        pieces = Pieces(
            TextDelta("a ", sure(0.9)), TextDelta("b", sure(0.8)), TextDelta("", sure(0.7))
        )
        events = aiter(pieces)
        read = await read_opening(events, words=0)
        return [e async for e in ResumedGeneration(pieces, events, read, logprobs=logprobs)]

    kept = asyncio.run(scenario(True))
    assert [(e.text, len(e.logprobs)) for e in kept if isinstance(e, TextDelta)] == [
        ("a ", 1),
        ("b", 1),
        ("", 1),
    ]
    dropped = asyncio.run(scenario(False))
    assert [e for e in dropped if isinstance(e, TextDelta)] == [TextDelta("a "), TextDelta("b")]
    assert isinstance(dropped[-1], GenerationDone)


class Holding(Generation):
    """Says its pieces, then holds until its reader is cancelled (a client that left)."""

    prompt_tokens = 7

    def __init__(self, *pieces: GenerationEvent) -> None:
        self.pieces = pieces
        self.holding = asyncio.Event()
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        for piece in self.pieces:
            yield piece
        self.holding.set()  # every piece was read, and the next one asked for
        await asyncio.Event().wait()
        yield GenerationDone("stop", Usage(7, len(self.pieces)))

    async def aclose(self) -> None:
        self.closed = True


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "opening"])
def test_a_read_cut_short_carries_the_tokens_generated_until_then(stream: bool) -> None:
    async def scenario() -> tuple[BaseException, bool]:
        # A token a piece; the second piece carries two (a tool call's text, released at once).
        held = Holding(
            TextDelta("The ", sure(0.9)), TextDelta("answer ", sure(0.8, 0.7)), TextDelta("is")
        )
        local = Answer(held, "local", "local-model", "policies:pass")
        reading = asyncio.ensure_future(Cascade(0.5).read(local, stream=stream, logprobs=False))
        await held.holding.wait()
        reading.cancel()
        with pytest.raises(asyncio.CancelledError) as caught:
            await reading
        return caught.value, held.closed

    error, closed = asyncio.run(scenario())
    assert partial_before(error) == PartialAnswer(prompt_tokens=7, completion_tokens=4)
    assert closed


LETTERS = frozenset("abcd")


def test_a_stream_s_opening_is_read_for_the_options_once_it_has_a_word() -> None:
    paris = opening_attempt((TextDelta("Paris is the capital", sure(0.9)),), LETTERS)
    assert paris.outside and Cascade(0.5).verdict(paris) == (False, "cascade:outside_options")
    letter = opening_attempt((TextDelta("B) Neptune", sure(0.9)),), LETTERS)
    assert not letter.outside and Cascade(0.5).verdict(letter)[0]
    assert not opening_attempt((TextDelta("Paris", sure(0.9)),)).outside  # no options offered
    # Nothing said yet, or a tool call: not read as a choice.
    assert not opening_attempt((TextDelta("", sure(0.9)),), LETTERS).outside
    assert not opening_attempt((TextDelta("\n\n"),), LETTERS).outside
    call = (TextDelta("Let me look "), ToolCallDelta(0, "call_1", "lookup", "{}"))
    assert not opening_attempt(call, LETTERS).outside


def test_a_whole_answer_is_read_for_the_options_unless_it_calls_tools() -> None:
    def read(*events: GenerationEvent) -> LocalAttempt:
        return asyncio.run(attempt(Pieces(*events), keep_logprobs=False, options=LETTERS))

    assert read(TextDelta("E) none of them")).outside
    assert not read(TextDelta("The answer is C.")).outside
    assert not read(TextDelta("Paris"), ToolCallDelta(0, "call_1", "lookup", "{}")).outside


@pytest.mark.parametrize(
    ("stream", "logprobs", "text", "told"),
    [
        (True, False, "Paris is the capital of France and its largest city by far.", True),
        (True, True, "Paris is the capital of France and its largest city by far.", False),
        (True, False, "Paris.", False),  # read to its end: nothing more to compute
        (False, False, "Paris is the capital of France and its largest city by far.", False),
    ],
    ids=["stream", "stream-asked", "short-stream", "whole"],
)
def test_a_stream_that_goes_on_without_logprobs_tells_the_local_model_to_stop_them(
    stream: bool, logprobs: bool, text: str, told: bool
) -> None:
    async def scenario() -> tuple[Pieces, Completion]:
        pieces = Pieces(*(TextDelta(word.text, sure(0.9)) for word in words(text)))
        local = Answer(pieces, "local", "local-model", "policies:pass")
        read = await Cascade(0.5).read(local, stream=stream, logprobs=logprobs)
        assert isinstance(read, Answer)
        return pieces, await collect(read.generation)

    pieces, completion = asyncio.run(scenario())
    assert completion.text == text + " "
    if told:
        # Told once the opening stood, before the rest of the stream was read.
        assert pieces.logprobs_stopped_at == OPENING_WORDS + 1 < len(pieces.pieces)
    else:
        assert pieces.logprobs_stopped_at is None
    assert len(completion.logprobs) == (len(pieces.pieces) if logprobs else 0)


def test_a_discarded_stream_is_closed_without_being_told_to_stop_logprobs() -> None:
    pieces = Pieces(*(TextDelta(w.text, sure(0.1)) for w in words("a b c d e f g h i j k")))
    local = Answer(pieces, "local", "local-model", "policies:pass")
    read = asyncio.run(Cascade(0.5).read(local, stream=True, logprobs=False))
    assert not isinstance(read, Answer)
    assert pieces.closed and pieces.logprobs_stopped_at is None


def test_wrapping_generations_pass_the_stop_of_logprobs_on() -> None:
    pieces = Pieces(TextDelta("a "), TextDelta("b"))
    events = aiter(pieces)
    resumed = ResumedGeneration(pieces, events, (), logprobs=False)
    Tallied(resumed, Tally()).stop_logprobs()
    assert pieces.logprobs_stopped_at == 0
    ReplayGeneration(()).stop_logprobs()  # nothing to stop: a no-op


YES_NO = frozenset({"yes", "no"})


def test_a_yes_or_no_answer_to_a_yes_or_no_question_stands_however_sure_the_model_was() -> None:
    def read(text: str, options: frozenset[str] | None) -> LocalAttempt:
        events = (TextDelta(text, sure(0.3)),)
        return asyncio.run(attempt(Pieces(*events), keep_logprobs=False, options=options))

    unsure_yes = read("Yes.", YES_NO)
    assert unsure_yes.yes_no and Cascade(0.5).verdict(unsure_yes) == (True, "cascade:yes_no:0.30")
    true = read("False, it is not.", frozenset({"true", "false"}))
    assert Cascade(0.5).verdict(true) == (True, "cascade:yes_no:0.30")
    # The same answer to another question is weighed on its confidence.
    assert Cascade(0.5).verdict(read("Yes.", None)) == (False, "cascade:0.30<0.5")
    assert Cascade(0.5).verdict(read("B", LETTERS)) == (False, "cascade:0.30<0.5")
    # Neither yes nor no, or declining: discarded as before.
    assert Cascade(0.5).verdict(read("Paris.", YES_NO)) == (False, "cascade:outside_options")
    assert Cascade(0.5).verdict(read("I don't know.", YES_NO)) == (False, "cascade:declined")
    # A stream's opening alike; a tool call is no answer of yes or no.
    opening = opening_attempt((TextDelta("No, it", sure(0.2)),), YES_NO)
    assert Cascade(0.5).verdict(opening) == (True, "cascade:opening:yes_no:0.20")
    call = opening_attempt((ToolCallDelta(0, "call_1", "lookup", "{}"),), YES_NO)
    assert not call.yes_no
