"""The exceptions hybrid raises, one tree under :class:`HybridError`.

```
HybridError
├── ConfigError                 a setting or the config file is invalid
├── ModelFileError              a model file is missing, unreadable or not a GGUF
├── ModelDownloadError          `hybrid pull` cannot fetch a model (names the repository)
├── ServeError                  the server cannot start (its address is taken, ...)
├── InvalidRequestError         a request hybrid understood but cannot honour (n > 1, ...)
│   ├── RequestNotFoundError    feedback names a request id the ledger does not hold
│   └── SwitchInProgressError   a model switch is asked for while another model loads
├── LedgerError                 the ledger file cannot be opened, migrated, written or read
│   ├── LedgerUnavailableError  the ledger database cannot be reached now (down, refused,
│   │                           timed out, connection lost): keep the journal, retry later
│   ├── LedgerAccessError       the ledger database refuses ledger.url (password, role,
│   │                           database name, permissions): fix ledger.url
│   ├── LedgerRefusedError      the ledger database refused the data written (a value out of
│   │                           range, a broken constraint): it would refuse it at every try
│   └── LedgerSchemaError       the ledger database was migrated by a newer hybrid
├── CalibrationRejectedError    a calibration fit is too uncertain, or worse than prompt
│                               length, to replace the calibration in use (it is not saved)
├── RoutingError                no backend can take the request
│   ├── ModelNotFoundError      the model name is neither local, an alias, nor a cloud model
│   │   │                       (or only its provider's API knows it, and that has no key)
│   │   └── LocalModelNotFoundError  a model switch names no model found on this machine
│   ├── NoRouteError            every candidate failed or none exists (names each failure)
│   ├── PrivateDataError        private data stays local, and the local model cannot answer
│   └── BudgetExceededError     a cloud spend cap is reached, and the local model cannot answer
└── BackendError                something that answers requests failed
    ├── LocalBackendError       the in-process llama.cpp model
    │   ├── ModelNotReadyError      the model is still loading, or failed to load
    │   ├── ContextLengthExceededError  prompt + output do not fit the context window
    │   ├── QueueFullError          too many requests are already waiting
    │   └── GenerationError         llama.cpp failed while generating
    └── ProviderError           a cloud provider failed (reason codes in brackets)
        ├── ProviderTimeoutError        [timeout] connect, first byte, whole answer or idle
        │   └── ProviderConnectTimeoutError  no connection within the connect timeout
        ├── ProviderRateLimitedError    [rate_limited] 429
        ├── ProviderAuthError           [auth] 401/403: the key is wrong or lacks access
        ├── ProviderUnavailableError    [unavailable] 5xx, refused or reset connection
        ├── ProviderRejectedError       [rejected] another 4xx: the request itself is at fault
        ├── ProviderProtocolError       [bad_response] malformed JSON or SSE
        └── CircuitOpenError            [circuit_open] recent failures: not tried for now
                                        (rate_limited when 429s opened it)
```

``hybrid monitor`` adds two of its own, ``DaemonUnreachable`` and ``MalformedEventError``
(in ``hybrid.monitor``), which never reach the server.

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


class ModelDownloadError(HybridError):
    """``hybrid pull`` cannot fetch a model: the repository, file or quantization does not
    exist, the hub refuses the token, the disk is full, the connection broke, or the download
    does not match the checksum the hub publishes.  The message names the repository or file
    and what to do."""


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


class RequestNotFoundError(InvalidRequestError):
    """Feedback names a request the ledger does not hold (never answered, or pruned).

    Attributes:
        request_id: The id asked for.
    """

    def __init__(self, message: str, *, request_id: str) -> None:
        super().__init__(message, param="request_id")
        self.request_id = request_id


class SwitchInProgressError(InvalidRequestError):
    """A model switch was asked for while another model (or the first one) is loading."""


class LedgerError(HybridError):
    """The ledger file cannot be opened, migrated, written or read (the message names it)."""


class LedgerUnavailableError(LedgerError):
    """The ledger database cannot be reached now: it is down, refuses connections, does not
    answer in time, or the connection was lost mid-statement.  Nothing was written; the same
    work can be tried again when the database returns."""


class LedgerAccessError(LedgerError):
    """The ledger database refuses what ``ledger.url`` says: a wrong password or user, a
    database that does not exist, or a role without the rights it needs.  Retrying does not
    help; the message says what to fix."""


class LedgerRefusedError(LedgerError):
    """The ledger database answered, and refused the data written for good: a value out of
    range, a broken constraint (NOT NULL, a unique key), a value the driver cannot send.
    Nothing of the statement was written; writing the same data again fails again, however long
    one waits, unlike :class:`LedgerUnavailableError`.  Raised by the translation of the
    driver's error (:func:`hybrid.ledger.pg.translate`, the SQLite database's
    ``failure``); the ledger's writer sets such an entry aside instead of retrying it."""


class LedgerSchemaError(LedgerError):
    """The ledger database holds a schema version newer than this hybrid knows: another
    daemon sharing it runs a newer hybrid."""


class CalibrationRejectedError(HybridError):
    """``hybrid calibrate`` fitted a model it will not save: the held-out sample is too small
    to trust, or the fit ranks prompts worse than their length.  The calibration in use is
    left as it was; the message says which it is and how to run again."""


class BackendError(HybridError):
    """A backend (the local model, later a cloud provider) could not answer."""


class LocalBackendError(BackendError):
    """The in-process llama.cpp backend could not answer."""


class ModelNotReadyError(LocalBackendError):
    """The local model is still loading, or it failed to load."""


class ContextLengthExceededError(LocalBackendError):
    """The prompt plus the requested output do not fit the model's context window.

    Attributes:
        prompt_tokens: Tokens in the formatted prompt; a lower bound when ``prompt_bytes`` is
            set.
        max_tokens: Output tokens the request asked for (or the default).
        context_length: Tokens the loaded context holds.
        prompt_bytes: The formatted prompt's size in bytes, when it was refused by its size
            alone, without being tokenized; else None.
    """

    def __init__(
        self,
        *,
        prompt_tokens: int,
        max_tokens: int,
        context_length: int,
        note: str = "",
        prompt_bytes: int | None = None,
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.context_length = context_length
        self.prompt_bytes = prompt_bytes
        if prompt_bytes is not None:
            size = f"{prompt_bytes:,} bytes, at least {prompt_tokens:,} tokens"
        else:
            size = f"{prompt_tokens:,} tokens"
        if prompt_tokens >= context_length:
            message = (
                f"prompt is {size}; the local model's context holds "
                f"{context_length:,}. Shorten the conversation, or start hybrid with a larger "
                f"context (--ctx or HYBRID_LOCAL__N_CTX) if the model and memory allow it."
            )
        else:
            message = (
                f"prompt is {prompt_tokens:,} tokens and {max_tokens:,} more were requested; "
                f"the local model's context holds {context_length:,}. Lower max_tokens to at "
                f"most {context_length - prompt_tokens:,} or shorten the prompt."
            )
        super().__init__(f"{message} {note}" if note else message)


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


class PreemptedError(LocalBackendError):
    """A background answer was stopped early for a client request that needed its slot; the
    work may ask again (it waits until the model is free)."""


class ProviderError(BackendError):
    """A cloud provider could not answer.

    Attributes:
        provider: The provider's name (``openai``, ``anthropic``, a configured name).
        reason: A short code for ``X-Hybrid-Reason`` (``timeout``, ``rate_limited``, ...).
        retryable: Whether the same request may succeed on a retry to the same provider.
        status: The upstream HTTP status, when there was one.
        retry_after: Seconds the provider asked to wait, when it said.
    """

    reason = "error"
    retryable = False

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.status = status
        self.retry_after = retry_after


class ProviderTimeoutError(ProviderError):
    """The provider did not connect, send its first byte (a whole answer's, when it is not
    streamed), or its next chunk in time."""

    reason = "timeout"
    retryable = True


class ProviderConnectTimeoutError(ProviderTimeoutError):
    """No connection was made within the connect timeout: nothing was sent.  A host that is
    powered off or cut off drops connection attempts instead of refusing them, so for a LAN
    server this means down, as :class:`ProviderUnreachableError` does; a read timeout on an
    established connection (a slow answer) is a plain :class:`ProviderTimeoutError`."""


class ProviderRateLimitedError(ProviderError):
    """The provider answered 429."""

    reason = "rate_limited"
    retryable = True


class ProviderAuthError(ProviderError):
    """The provider refused the key (401) or its permissions (403)."""

    reason = "auth"


class ProviderUnavailableError(ProviderError):
    """A 5xx, a refused or reset connection: the provider is down or overloaded."""

    reason = "unavailable"
    retryable = True


class ProviderUnreachableError(ProviderUnavailableError):
    """No connection could be made at all (refused, no route): the server is down, not busy."""


class ProviderRejectedError(ProviderError):
    """A 4xx other than 401, 403 and 429: the provider says the request is at fault."""

    reason = "rejected"


class ProviderProtocolError(ProviderError):
    """The provider's response was not the JSON or SSE its API defines."""

    reason = "bad_response"
    retryable = True


class WrongModelError(ProviderProtocolError):
    """The server answered with another model than the one asked for (a LAN server whose
    model was swapped): the same server would answer so again, so it is not retried."""

    reason = "wrong_model"
    retryable = False


class CircuitOpenError(ProviderError):
    """The provider failed repeatedly and is skipped until its circuit half-opens.

    Attributes:
        rate_limited: Whether rate limits (HTTP 429) opened the circuit: the provider is
            skipped because it is rate limiting requests, which a client is told as such.
    """

    reason = "circuit_open"

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        retry_after: float | None = None,
        rate_limited: bool = False,
    ) -> None:
        super().__init__(provider, message, retry_after=retry_after)
        self.rate_limited = rate_limited


class RoutingError(HybridError):
    """No backend can take the request."""


class PrivateDataError(RoutingError):
    """The request holds private data, which stays on this machine, and the local model cannot
    answer it; it is refused rather than sent to the cloud.

    Attributes:
        should_retry: Whether the local model may be able to answer later (busy or loading).
    """

    def __init__(self, message: str, *, should_retry: bool) -> None:
        self.should_retry = should_retry
        super().__init__(message)


class ModelNotFoundError(RoutingError):
    """The requested model is neither the local model, an alias, nor a cloud model; or it is
    a name only its provider's API knows (``gpt-4``), and that provider has no key.

    Attributes:
        model: The name asked for.
        available: The names that would have worked.
        provider: The provider that serves the name but has no key, when that is why.
    """

    def __init__(
        self,
        model: str,
        available: list[str],
        *,
        provider: str | None = None,
        label: str | None = None,
        key_variable: str | None = None,
    ) -> None:
        """Build the error.

        Args:
            model: The name asked for.
            available: The names that would have worked.
            provider: The provider that serves the name but has no key, when that is why.
            label: That provider's name as people write it (``OpenAI``).
            key_variable: The environment variable its key comes from.
        """
        self.model = model
        self.available = available
        self.provider = provider
        if provider is None:
            message = (
                f"the model {model!r} does not exist here; available: {', '.join(available)}. "
                f"Use one of those, or declare a provider that serves it in the config file."
            )
        else:
            label = label or provider
            article = "an" if label[:1].lower() in "aeiou" else "a"
            fix = f"set {key_variable}" if key_variable else f"give {provider} its key"
            message = (
                f"{model} is {article} {label} model but no {label} key is set; {fix} and "
                f"restart hybrid, or ask for 'hybrid' or 'local' to have the local model "
                f"answer. Available now: {', '.join(available)}."
            )
        super().__init__(message)

    @property
    def cause(self) -> str | None:
        """A reason code for why the name is not served (``openai:no_key``), when known."""
        return f"{self.provider}:no_key" if self.provider is not None else None


class LocalModelNotFoundError(ModelNotFoundError):
    """A model switch names no model file found on this machine.

    Attributes:
        model: The name asked for.
        available: The names of the models found.
    """

    def __init__(self, model: str, available: list[str]) -> None:
        super().__init__(model, available)
        self.args = (
            f"no local model is called {model!r}; the server can load: "
            f"{', '.join(available)}. Put a GGUF file in a models folder (`hybrid models` "
            f"shows where it looks) to add one.",
        )


class NoRouteError(RoutingError):
    """Nothing can serve the request: every candidate failed, or none exists.

    Attributes:
        failures: What was tried and why it failed, e.g. ``["openai: timeout", ...]``.
        should_retry: Whether retrying later can help (False when, e.g., no key is set).
        retry_after: Seconds to wait before retrying, when a provider said (the shortest
            wait any of them asked for).
        rate_limited: Whether every candidate was a provider that rate-limited the request
            (HTTP 429) or was skipped for a circuit that rate limits opened: the client is told
            it is rate limited, not that nothing is there.
    """

    def __init__(
        self,
        message: str,
        *,
        failures: list[str],
        should_retry: bool,
        retry_after: float | None = None,
        rate_limited: bool = False,
    ) -> None:
        self.failures = failures
        self.should_retry = should_retry
        self.retry_after = retry_after
        self.rate_limited = rate_limited
        super().__init__(message)


class BudgetExceededError(RoutingError):
    """A cloud spend cap is reached and the local model cannot answer the request.

    Attributes:
        cap: The cap's reason code (``budget:daily_cap``, ``budget:openai:monthly_cap``, ...).
    """

    def __init__(self, message: str, *, cap: str) -> None:
        self.cap = cap
        super().__init__(message)
