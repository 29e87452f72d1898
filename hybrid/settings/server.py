"""The ``[server]`` settings: where ``hybrid serve`` listens and whom it answers::

    [server]
    host = "127.0.0.1"
    port = 8642
    allowed_hosts = ["hybrid.lan"]
    allowed_origins = ["http://localhost:3000"]

Who may reach the server is decided by three of them: ``api_key`` (any client that knows it),
``allowed_hosts`` (the names a request may address the server by, against DNS rebinding) and
``allowed_origins`` (the web pages a browser may let call it).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

MIN_API_KEY_CHARS = 16
"""The fewest characters ``server.api_key`` may have."""

# Browsers leave these out of an Origin.
_DEFAULT_PORTS = {"http": 80, "https": 443}


class ServerSettings(BaseModel):
    """The OpenAI-compatible HTTP server that ``hybrid serve`` runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(
        default="127.0.0.1",
        description="Address to listen on; 127.0.0.1 keeps the server private to this machine.",
    )
    port: int = Field(
        default=8642,
        ge=1,
        le=65535,
        description=(
            "TCP port to listen on. The default 8642 clashes with none of Ollama (11434), "
            "llama.cpp's server (8080), LM Studio (1234) or LiteLLM (4000)."
        ),
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted, in bytes; larger requests get HTTP 413.",
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Seconds a client has to send a request's whole body once its headers arrived; a "
            "slower upload gets HTTP 408 and its connection is closed."
        ),
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Seconds a client has to send a request line and its headers, from the moment it "
            "connects or its previous response ended; a slower client's connection is closed."
        ),
    )
    api_key: SecretStr | None = Field(
        default=None,
        description=(
            "Key clients must send (Authorization: Bearer or x-api-key) on every endpoint but "
            f"/health; at least {MIN_API_KEY_CHARS} characters, no spaces; required to listen "
            "beyond loopback."
        ),
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "Host names requests may address the server by (any port), besides localhost, "
            "127.0.0.0/8, [::1] and a non-loopback server.host; '*' allows any. Requests for "
            "other names get HTTP 403, which stops DNS-rebinding web pages."
        ),
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description=(
            "Web page origins (http://localhost:3000) a browser may call the server from; '*' "
            "allows any page. Requests from other pages get HTTP 403. Empty: no web page."
        ),
    )
    shutdown_timeout_s: int = Field(
        default=10,
        ge=0,
        description="On SIGINT/SIGTERM, seconds in-flight requests get to finish before they "
        "are cancelled.",
    )

    @field_validator("api_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        key = value.get_secret_value()
        if len(key) < MIN_API_KEY_CHARS or any(char.isspace() for char in key):
            raise ValueError(
                f"a key needs at least {MIN_API_KEY_CHARS} characters and no whitespace, so "
                'that it cannot be guessed; make one with: python -c "import secrets; '
                'print(secrets.token_urlsafe(32))"'
            )
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, hosts: list[str]) -> list[str]:
        names = []
        for entry in hosts:
            name = entry.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")
            if not name or "/" in name:
                raise ValueError(
                    f"{entry!r} is not a host name; list names such as 'hybrid.lan' or "
                    "'192.168.1.20' (no scheme, no path), or '*' for any"
                )
            names.append(name)
        return names

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        return [_origin(entry) for entry in origins]


def _origin(entry: str) -> str:
    """An origin as browsers send it (``scheme://host[:port]``, lower case, no default port), or
    ``*``."""
    text = entry.strip()
    if text == "*":
        return text
    parts = urlsplit(text.lower())
    try:
        port = parts.port
    except ValueError:
        port, parts = None, parts._replace(netloc="")
    if (
        not parts.scheme
        or not parts.hostname
        or "@" in parts.netloc
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError(
            f"{entry!r} is not an origin; list origins as browsers send them, such as "
            "'http://localhost:3000' (scheme, host and port, no path), or '*' for any page"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is None or _DEFAULT_PORTS.get(parts.scheme) == port:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"
