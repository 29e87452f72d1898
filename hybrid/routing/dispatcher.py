"""Starting an answer: pick the backend for a request, start it, fail over when it fails.

The HTTP routes hand every request to :meth:`Dispatcher.start` and get back an :class:`Answer`:
the running generation plus the route, the model and the reason, which become the
``X-Hybrid-*`` response headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hybrid.backend import Generation
from hybrid.generation import GenerationRequest
from hybrid.local.runtime import LocalRuntime

Route = Literal["local", "cloud"]
RouteOverride = Literal["auto", "local", "cloud"]


@dataclass(frozen=True)
class Answer:
    """A started answer and why it is answered where it is.

    Attributes:
        generation: The running generation; iterate it, then close it.
        route: ``local`` or ``cloud``.
        model: What answers: the local model's id, or ``provider/model``.
        reason: A short code for ``X-Hybrid-Reason`` (``explicit:local``, ``length:9312>8192``,
            ``cloud_unavailable:openai:timeout``, ...).
    """

    generation: Generation
    route: Route
    model: str
    reason: str

    def headers(self) -> dict[str, str]:
        """The ``X-Hybrid-*`` headers that describe this answer."""
        return {
            "X-Hybrid-Route": self.route,
            "X-Hybrid-Model": self.model,
            "X-Hybrid-Reason": self.reason,
        }


class Dispatcher:
    """Chooses and starts the backend for each request.

    Args:
        runtime: The local model's runtime.
    """

    def __init__(self, runtime: LocalRuntime) -> None:
        self._runtime = runtime

    async def start(
        self,
        request: GenerationRequest,
        *,
        model: str | None,
        override: RouteOverride | None = None,
    ) -> Answer:
        """Start answering a request.

        Args:
            request: What to generate (its ``model`` field is filled in for a cloud target).
            model: The model name the client asked for (``hybrid``, ``local``, a cloud model,
                or None).
            override: The ``X-Hybrid-Route`` header, when the client sent one.

        Returns:
            The started answer.

        Raises:
            ModelNotFoundError: The model name is unknown.
            NoRouteError: Nothing can serve the request.
            HybridError: The chosen backend refused the request (context, queue, ...).
        """
        backend = self._runtime.backend()
        generation = await backend.start(request)
        return Answer(generation, "local", backend.model_id, "local_only")
