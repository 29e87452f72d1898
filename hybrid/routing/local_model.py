"""What routing sees of the local model: a narrow interface, satisfied structurally.

Routing decides with the local model's state and capacity (is it loaded, how long its context
is, how deep its queue, how many answers it decodes at once and how fast, alone and in a
batch), prepares requests for it, asks it for a prompt's vector and starts answers on it; it
does all of that through these protocols and imports no module of :mod:`hybrid.local` (an
import-linter contract in ``pyproject.toml`` checks it).
:class:`~hybrid.local.runtime.LocalRuntime` is a :class:`LocalCapacity`, and its
:class:`~hybrid.local.backend.LocalBackend` a :class:`LocalAnswerer`, by their shape alone:
the composition roots (the app factory, ``hybrid route``) hand the runtime to the
:class:`~hybrid.routing.dispatcher.Dispatcher`, and tests hand it fakes.

A request prepared for the local model (formatted, tokenized, checked against the context) is
opaque to routing but for its size: routing reads :class:`PreparedPrompt`'s two figures and
hands the rest back, unchanged, to the backend that made it, so that an answer routed there is
not tokenized twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from hybrid.backend import Generation
from hybrid.generation import GenerationRequest

if TYPE_CHECKING:
    import numpy as np


class PreparedPrompt(Protocol):
    """A request prepared for the local model, as far as routing reads it."""

    @property
    def tokens(self) -> Sequence[int]:
        """The formatted prompt's tokens."""
        ...

    @property
    def max_tokens(self) -> int:
        """Tokens the answer may take (the request's cap, or the room the context leaves)."""
        ...


Prepared = TypeVar("Prepared", bound=PreparedPrompt)
"""What one backend's :meth:`LocalAnswerer.prepare` makes and its :meth:`~LocalAnswerer.start`
takes back."""


class QueueLoad(Protocol):
    """How busy the local model's queue is."""

    @property
    def depth(self) -> int:
        """Requests waiting plus those running."""
        ...

    @property
    def slots(self) -> int:
        """Requests the model answers at once (decoded together in one batch)."""
        ...

    @property
    def running(self) -> int:
        """Client requests running now (each in a slot)."""
        ...

    def expected_wait_s(self) -> float:
        """Estimated seconds before a request submitted now would start (0 while a slot is
        free)."""
        ...


class SpeedEstimate(Protocol):
    """How fast the local model has answered on this machine."""

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Generated tokens per second of one answer decoding alone (None before any)."""
        ...

    def stream_decode_tokens_per_s(self, batch_size: int) -> float | None:
        """Generated tokens per second of one answer while ``batch_size`` answers decode
        together (measured, or estimated from the batch sizes measured; None before any)."""
        ...

    @property
    def prefill_tokens_per_s(self) -> float | None:
        """Prompt tokens per second (None before any answer)."""
        ...

    @property
    def typical_answer_tokens(self) -> int:
        """The usual answer length in tokens (a default before any answer)."""
        ...


@runtime_checkable
class SizedGeneration(Protocol):
    """A started local generation that knows its size (the reason ``length:N<=ctx`` says it).

    Attributes:
        prompt_tokens: Tokens in the formatted prompt.
        max_tokens: Tokens it may generate at most.
    """

    prompt_tokens: int
    max_tokens: int


class LocalAnswerer(Protocol[Prepared]):
    """The ready local model: its capacity, and the calls that answer on it."""

    @property
    def model_id(self) -> str:
        """The id clients see."""
        ...

    @property
    def context_length(self) -> int:
        """Tokens the loaded context holds."""
        ...

    @property
    def embedding_size(self) -> int:
        """Length of the vectors :meth:`prompt_embedding` returns."""
        ...

    @property
    def supports(self) -> frozenset[str]:
        """What the model can do beyond text (``tools``)."""
        ...

    @property
    def queue(self) -> QueueLoad:
        """Its queue's load."""
        ...

    @property
    def speed(self) -> SpeedEstimate:
        """Its measured speed."""
        ...

    async def prepare(self, request: GenerationRequest) -> Prepared:
        """Format and tokenize a request and check that it fits, without queueing it.

        Raises:
            ContextLengthExceededError: The prompt and requested output do not fit.
            InvalidRequestError: The model cannot take the request (images, tools, a schema).
        """
        ...

    async def start(
        self,
        request: GenerationRequest,
        *,
        prepared: Prepared | None = None,
        running: Callable[[], AbstractContextManager[object]] | None = None,
    ) -> Generation:
        """Queue a request (prepared by :meth:`prepare`, or prepared now) and start it.

        Args:
            request: The request.
            prepared: What :meth:`prepare` made of it.
            running: Entered on the model's worker thread as the answer starts on the model
                (after its wait in the queue) and left as it ends or is stopped, so that a
                caller can meter the work alone (a local shadow answer's energy).

        Raises:
            ContextLengthExceededError: The prompt and requested output do not fit.
            QueueFullError: The queue is full.
            InvalidRequestError: The model cannot take the request.
        """
        ...

    async def prompt_embedding(
        self,
        request: GenerationRequest,
        *,
        prepared: Prepared | None = None,
        running: Callable[[], AbstractContextManager[object]] | None = None,
    ) -> np.ndarray:
        """The model's own vector of a request's prompt, evaluated on its queue; background
        work then waits for the answer that follows (a hand-off), or for
        :meth:`release_hand_off`.

        Args:
            request: The request.
            prepared: What :meth:`prepare` made of it.
            running: Entered on the model's worker thread while the prompt is evaluated, as
                :meth:`start`'s is.

        Raises:
            ContextLengthExceededError: The prompt and requested output do not fit.
            QueueFullError: The queue is full.
            InvalidRequestError: The model cannot take the request.
            GenerationError: The model failed while evaluating the prompt.
        """
        ...

    def release_hand_off(self) -> None:
        """Let background work run again when no answer follows :meth:`prompt_embedding`."""
        ...


class LocalCapacity(Protocol[Prepared]):
    """The local model's runtime, as routing reads it: loaded or not, and its backend.

    A model unloaded while idle (``local.keep_alive``) is reloaded by :meth:`wake`; until then
    routing counts :meth:`expected_load_s` in its wait.
    """

    @property
    def state(self) -> str:
        """``loading``, ``ready``, ``unloaded``, ``failed`` or ``closed``."""
        ...

    @property
    def last_speed(self) -> SpeedEstimate | None:
        """The speed the model was measured at before it was unloaded (None before any)."""
        ...

    def expected_load_s(self) -> float:
        """Seconds before an unloaded model could answer (its load, or what is left of a
        reload in progress); 0 when it is not unloaded."""
        ...

    def wake(self) -> Awaitable[None]:
        """Start reloading an unloaded model (or join the reload in progress).

        Returns:
            Resolves when the load has ended; :meth:`backend` then answers or says why not.
            Done at once when the model is not unloaded.
        """
        ...

    @property
    def model_id(self) -> str:
        """The local model's id (the configured one while it loads)."""
        ...

    def backend(self) -> LocalAnswerer[Prepared]:
        """The ready model.

        Raises:
            ModelNotReadyError: It is loading, failed to load, or was closed.
        """
        ...
