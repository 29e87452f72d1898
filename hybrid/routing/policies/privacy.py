"""Privacy: a request with personal or secret data stays on this machine.

A hit *pins* the request: whatever later policies say, it is answered locally, or refused when
the local model cannot answer it (unless ``routing.privacy.allow_cloud``).  The reason names the
detector, never the matched text.
"""

from __future__ import annotations

from hybrid.routing.policy import Policy, RouteContext, Verdict
from hybrid.routing.privacy import PrivacyScanner


class PrivacyPolicy(Policy):
    """Pins requests in which the scanner finds personal or secret data.

    Args:
        scanner: The configured detectors.
    """

    name = "privacy"
    pins = True

    def __init__(self, scanner: PrivacyScanner) -> None:
        self._scanner = scanner

    def evaluate(self, context: RouteContext) -> Verdict:
        """``local``, pinned, with ``privacy:<detector>`` on the first hit."""
        hit = self._scanner.first(context.text)
        if hit is None:
            return self.abstain("privacy:none")
        # A configured path is the user's own text: name the kind of hit, not the path.
        detector = "path" if hit.detector.startswith("path:") else hit.detector
        return Verdict(self.name, "local", f"privacy:{detector}", pin=True)
