"""Allow ``python -m hybrid``."""

from __future__ import annotations

from hybrid.cli import main

raise SystemExit(main())
