"""The LAN tier's view of a team's inference servers: how busy each is, and whether it is up.

A LAN server is any OpenAI-compatible server on the network: llama.cpp's ``llama-server``,
vLLM, Ollama's ``/v1``, llama-cpp-python's server, another hybrid.  Two probes ask it, through
the caller's ``httpx2.AsyncClient``, with short timeouts, and never raise because of it:

- :class:`LoadProbe` (one per server) / :func:`probe_load`: a :class:`ServerLoad` from whatever
  the server reports (llama-server ``/slots`` and ``/metrics``, vLLM ``/metrics``, Ollama
  ``/api/ps``, another hybrid's ``/health``), or None, when the caller counts its own requests
  in flight instead (:meth:`ServerLoad.from_in_flight`).
- :func:`probe_health`: a :class:`ServerHealth`: up or down (with the reason in one line), the
  models ``GET {base_url}/models`` lists, and how long the check took.

Servers are configured by their OpenAI base URL (``http://gpu-box:8080/v1``); their root, where
``/health``, ``/slots`` and ``/metrics`` live, is that URL less its ``/v1``
(:func:`server_root`).
"""

from __future__ import annotations

from hybrid.lan.fetch import server_root
from hybrid.lan.health import ServerHealth, probe_health
from hybrid.lan.load import LoadProbe, ServerKind, probe_load
from hybrid.lan.reports import LoadSource, ServerLoad

__all__ = [
    "LoadProbe",
    "LoadSource",
    "ServerHealth",
    "ServerKind",
    "ServerLoad",
    "probe_health",
    "probe_load",
    "server_root",
]
