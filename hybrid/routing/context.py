"""What the routing policies see of a request: its text, its local token count, the machine.

The request is prepared for the local model on the way (formatted and tokenized) when the model
is ready, so that an answer routed there is not tokenized twice.  The local model is read
through :mod:`hybrid.routing.local_model`'s interface.
"""

from __future__ import annotations

from hybrid.errors import ContextLengthExceededError, InvalidRequestError
from hybrid.generation import GenerationRequest
from hybrid.hardware.snapshot import LiveSample
from hybrid.routing.choices import options_of
from hybrid.routing.local_model import LocalCapacity, Prepared
from hybrid.routing.policy import LocalStatus, RouteContext, joined_batch


async def route_context(
    local: LocalCapacity[Prepared],
    request: GenerationRequest,
    *,
    count_tokens: bool,
    load: LiveSample | None,
) -> tuple[RouteContext, Prepared | None, ContextLengthExceededError | None]:
    """Build the context the policies decide on.

    Args:
        local: The local model.
        request: The request.
        count_tokens: Format and tokenize it for the local model (the length and capacity
            policies need the count).
        load: The latest live hardware sample, for the capacity policy.

    Returns:
        The context; the request prepared for the local model when it fits there; and the
        local model's refusal when it does not.
    """
    prepared: Prepared | None = None
    unfit: ContextLengthExceededError | None = None
    prompt_tokens: int | None = None
    max_tokens = request.params.max_tokens or 0
    expected_tokens = request.params.max_tokens
    status = LocalStatus(local.state)
    if local.state == "ready" and count_tokens:
        backend = local.backend()
        try:
            prepared = await backend.prepare(request)
            prompt_tokens, max_tokens = len(prepared.tokens), prepared.max_tokens
        except ContextLengthExceededError as exc:
            unfit = exc
            prompt_tokens, max_tokens = exc.prompt_tokens, exc.max_tokens
        except InvalidRequestError:
            pass  # the local model cannot take it (images, a template's rules): no count
        if expected_tokens is None:
            expected_tokens = min(max_tokens, backend.speed.typical_answer_tokens)
        queue, speed = backend.queue, backend.speed
        slots, running = queue.slots, queue.running
        status = LocalStatus(
            "ready",
            context_length=backend.context_length,
            queue_depth=queue.depth,
            expected_wait_s=queue.expected_wait_s(),
            decode_tokens_per_s=speed.decode_tokens_per_s,
            prefill_tokens_per_s=speed.prefill_tokens_per_s,
            supports=backend.supports,
            slots=slots,
            running=running,
            stream_decode_tokens_per_s=speed.stream_decode_tokens_per_s(
                joined_batch(slots, running)
            ),
        )
    elif local.state == "unloaded":
        # Unloaded while idle: the wait is the reload, then the speed measured before.
        last = local.last_speed
        if expected_tokens is None and last is not None:
            expected_tokens = last.typical_answer_tokens
        # Reloaded, it answers nothing else yet: the newcomer decodes alone.
        status = LocalStatus(
            "unloaded",
            expected_wait_s=local.expected_load_s(),
            decode_tokens_per_s=last.decode_tokens_per_s if last is not None else None,
            prefill_tokens_per_s=last.prefill_tokens_per_s if last is not None else None,
            stream_decode_tokens_per_s=last.decode_tokens_per_s if last is not None else None,
        )
    text = request.prompt if request.prompt is not None else ""
    if request.messages:
        # Tool-call arguments are text the privacy and difficulty policies must read too.
        text = "\n".join(
            "\n".join([message.content, *(call.arguments for call in message.tool_calls)])
            if message.tool_calls
            else message.content
            for message in request.messages
        )
    context = RouteContext(
        messages=request.messages,
        text=text,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        expected_tokens=expected_tokens,
        local=status,
        needs=request.needs,
        load=load,
        options=options_of(request),
    )
    return context, prepared, unfit
