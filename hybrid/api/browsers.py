"""Which host names and web pages may reach the server.

A browser is the one client that acts for someone other than the user: any page the user opens
can make it send requests to ``127.0.0.1``.  Two checks keep such pages from spending the user's
budget or reading their stats:

- **Host.** A DNS-rebinding page reaches the server under the page's own name
  (``Host: evil.example:8642``), so the browser treats it as same-origin and lets the page read
  the answers.  Only loopback names, the address the connection reached, a non-loopback bind
  address and ``server.allowed_hosts`` are served.
- **Origin.** A page on another origin that sends a request directly carries an ``Origin``
  header (``Sec-Fetch-Site`` without ``Origin`` for some requests a page embeds).  Only the
  server's own origin and ``server.allowed_origins`` are served, and CORS is granted to exactly
  those.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

_ANY = "*"
# Sec-Fetch-Site values a page on another origin causes; a navigation is the user's own doing.
_FOREIGN_SITES = frozenset({"cross-site", "same-site"})


def host_name(host: str) -> str:
    """The name in a ``Host`` header, without port or IPv6 brackets, in lower case.

    Args:
        host: The header's value (``localhost:8642``, ``[::1]:8642``, ``Example.COM``).

    Returns:
        The name (``localhost``, ``::1``, ``example.com``); a trailing dot is dropped.
    """
    host = host.strip().lower()
    if host.startswith("["):
        name, _, _ = host[1:].partition("]")
    elif host.count(":") == 1:
        name = host.partition(":")[0]
    else:
        name = host
    return name.rstrip(".")


def is_loopback(name: str) -> bool:
    """Whether a host name always means this machine: ``localhost``, 127.0.0.0/8 or ``::1``."""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class AllowedHosts:
    """The names a request may address the server by.

    Attributes:
        names: Lower-case host names and addresses allowed besides loopback ones.
        any: Every name is allowed (``"*"`` was configured).
    """

    names: frozenset[str]
    any: bool = False

    @classmethod
    def of(cls, allowed: Iterable[str], bound_host: str) -> AllowedHosts:
        """The configured names, plus the bind address when it is not a loopback one."""
        names = {host_name(name) for name in allowed}
        bound = host_name(bound_host)
        if not is_loopback(bound):
            names.add(bound)
        return cls(frozenset(names - {_ANY}), any=_ANY in names)

    def allows(self, host: str | None, local_address: str | None) -> bool:
        """Whether a request with this ``Host`` header may be served.

        Args:
            host: The ``Host`` header; None when the request has none (HTTP/1.0), which no
                browser sends.
            local_address: The address the connection reached.  An address typed as the host
                is never a rebinding page: rebinding needs a name the page's owner controls.
        """
        if host is None or self.any:
            return True
        name = host_name(host)
        return (
            is_loopback(name) or name in self.names or (name == local_address and _is_address(name))
        )


@dataclass(frozen=True)
class AllowedOrigins:
    """The web pages a browser may let call the server.

    Attributes:
        origins: Allowed origins as browsers send them (``http://localhost:3000``).
        any: Every page is allowed (``"*"`` was configured).
    """

    origins: frozenset[str]
    any: bool = False

    @classmethod
    def of(cls, allowed: Iterable[str]) -> AllowedOrigins:
        """The configured origins (already normalised by the settings)."""
        origins = frozenset(allowed)
        return cls(origins - {_ANY}, any=_ANY in origins)

    def allows(self, origin: str, own: str) -> bool:
        """Whether a request from a page on ``origin`` may be served.

        Args:
            origin: The request's ``Origin`` header.
            own: The server's own origin as the request addressed it (``http://127.0.0.1:8642``).
        """
        origin = origin.strip().lower()
        return self.any or origin == own or origin in self.origins


def from_foreign_page(fetch_site: str | None, fetch_mode: str | None) -> bool:
    """Whether ``Sec-Fetch-*`` headers say a page on another origin caused the request.

    Browsers send them on every request; a navigation (a link the user followed) does not
    count, since the page cannot read what it opens.
    """
    return fetch_site in _FOREIGN_SITES and fetch_mode != "navigate"
