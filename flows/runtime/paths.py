"""Where things are by default. Every command takes --landing and --warehouse to override."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
SAMPLE_LANDING = REPO / "sample_data" / "landing"
WAREHOUSE = Path("warehouse")
# The GX project (suites, validation results, Data Docs): <restricted>/gx. No data values, but the
# figures observed, a small k among them when a check fails: not for analysts.
GX_PROJECT = "gx"
# Raw personal data the pipeline itself creates (quarantined rows): mode 0700, never published.
RESTRICTED = Path("restricted")


def restricted_dir(root: Path, *parts: str) -> Path:
    """A directory under the restricted area, created owner-only (0700) all the way down."""
    path = root.joinpath(*parts)
    root.parent.mkdir(parents=True, exist_ok=True)
    for p in [root, *(root.joinpath(*parts[: i + 1]) for i in range(len(parts)))]:
        p.mkdir(mode=0o700, exist_ok=True)
        p.chmod(0o700)
    return path
