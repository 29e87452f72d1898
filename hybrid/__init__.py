"""hybrid: a local-first LLM router.

Requests are answered by a quantized GGUF model on this machine when it can serve them well, and
(in later layers) escalated to a cloud provider when it must.
"""

from __future__ import annotations

__version__ = "0.1.0"
