"""The exceptions hybrid raises, one tree under :class:`HybridError`.

```
HybridError
├── ConfigError                 a setting or the config file is invalid
├── ModelFileError              a model file is missing, unreadable or not a GGUF
├── ServeError                  the server cannot start (its address is taken, ...)
├── InvalidRequestError         a request hybrid understood but cannot honour (n > 1, ...)
└── BackendError                something that answers requests failed
    └── LocalBackendError       the in-process llama.cpp model
        ├── ModelNotReadyError      the model is still loading, or failed to load
        ├── ContextLengthExceededError  prompt + output do not fit the context window
        ├── QueueFullError          too many requests are already waiting
        └── GenerationError         llama.cpp failed while generating
```

Foreign exceptions (llama_cpp, OS errors) are translated into this tree at the boundary where
they happen, with ``raise ... from exc``.  The HTTP layer turns these into wire-shaped errors
in exactly one place (``hybrid.api.errors``), by type.

Every message says what happened and what the user can do about it.
"""

from __future__ import annotations


class HybridError(Exception):
    """Base class of every error hybrid raises on purpose."""


class ConfigError(HybridError):
    """A setting, a command-line flag or the config file holds an invalid value."""


class ModelFileError(HybridError):
    """A model file is missing, unreadable, corrupt, or not a GGUF file."""


class ServeError(HybridError):
    """``hybrid serve`` cannot start: its address is taken or not available."""


class InvalidRequestError(HybridError):
    """A well-formed request asks for something hybrid cannot do.

    Attributes:
        param: The request field at fault, when there is one.
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class BackendError(HybridError):
    """A backend (the local model, later a cloud provider) could not answer."""


class LocalBackendError(BackendError):
    """The in-process llama.cpp backend could not answer."""


class ModelNotReadyError(LocalBackendError):
    """The local model is still loading, or it failed to load."""


class ContextLengthExceededError(LocalBackendError):
    """The prompt plus the requested output do not fit the model's context window.

    Attributes:
        prompt_tokens: Tokens in the formatted prompt.
        max_tokens: Output tokens the request asked for (or the default).
        context_length: Tokens the loaded context holds.
    """

    def __init__(self, *, prompt_tokens: int, max_tokens: int, context_length: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.context_length = context_length
        if prompt_tokens >= context_length:
            message = (
                f"prompt is {prompt_tokens:,} tokens; the local model's context holds "
                f"{context_length:,}. Shorten the conversation, or start hybrid with a larger "
                f"context (--ctx or HYBRID_LOCAL__N_CTX) if the model and memory allow it."
            )
        else:
            message = (
                f"prompt is {prompt_tokens:,} tokens and {max_tokens:,} more were requested; "
                f"the local model's context holds {context_length:,}. Lower max_tokens to at "
                f"most {context_length - prompt_tokens:,} or shorten the prompt."
            )
        super().__init__(message)


class QueueFullError(LocalBackendError):
    """The local model's request queue is full.

    Attributes:
        retry_after: Seconds after which a retry is likely to be accepted.
    """

    def __init__(self, *, depth: int, retry_after: float) -> None:
        self.depth = depth
        self.retry_after = retry_after
        super().__init__(
            f"the local model is busy: {depth} requests are already queued. "
            f"Retry in about {retry_after:.0f} s, or raise HYBRID_LOCAL__MAX_QUEUE."
        )


class GenerationError(LocalBackendError):
    """llama.cpp failed while evaluating or sampling."""
