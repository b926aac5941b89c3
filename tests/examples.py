"""How many examples a property test tries: its own number in `make test` and CI, a quarter of it
(at least 3) in `make test-fast` (TUOMIN_EXAMPLES=0.25), the developer's quick loop. A property
that fails only on rare inputs is still found by the full run before anything lands."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import settings

SCALE = float(os.environ.get("TUOMIN_EXAMPLES", "1"))


def examples(n: int, **more: Any) -> settings:
    """@settings(max_examples=n, **more), n scaled for the tier being run."""
    return settings(max_examples=max(3, round(n * SCALE)) if SCALE != 1 else n, **more)
