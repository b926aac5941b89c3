"""What a command needs, checked before anything slow starts (Prefect's temporary server, a flow
run): keys, policies and paths. A problem is a UsageError, or the key's or policy's own error,
naming what and where in one line; `tuomin` prints it without a traceback and exits 2."""

from __future__ import annotations

from pathlib import Path

from flows.storage import keys
from flows.storage import landing as landing_io
from transforms.errors import Refused
from transforms.policy import load_policies
from transforms.steps import ExportError


class UsageError(Refused, ValueError):
    """A command given something it cannot use; nothing was changed."""


def landing(url: str | Path) -> landing_io.Landing:
    """The landing area at `url`, which must exist: a mistyped path is not an empty landing."""
    return landing_io.existing(url)


def key(kind: keys.KeyKind) -> str | None:
    """The key's key_id, loaded where it is kept; None for a Secret block (Prefect's server is
    needed to read one: the flow checks it when it starts)."""
    location = keys.locate(kind)
    return None if location.block else location.load().key_id


def run(landing_url: str | Path, restricted: Path, policy_dir: Path, backup: bool, rotating: bool) -> None:
    """Everything `tuomin run` and `tuomin backfill` need before a flow run starts."""
    from flows.storage import ledger

    ledger.writable(restricted)  # a ledger that does not verify: refused in one line, nothing started
    policies = load_policies(policy_dir)
    area = landing(landing_url)
    try:
        for policy in policies.values():  # a folder dated after today (9999-12-31): refused in one line
            landing_io.source_files(area, policy)
    except ExportError as exc:  # and recorded, where there is a ledger: a landing no run can read
        _record_refusal(restricted, area, policies, str(exc))
        raise
    landing_io.read_erasure_requests(area)  # a damaged request line: refused in one line, not a silent no-op
    key_id = key(keys.PSEUDONYM)
    if key_id is not None and not rotating:
        keys.check_continuity(restricted, key_id)
    if backup:
        key(keys.BACKUP)


def _record_refusal(restricted: Path, area: landing_io.Landing, policies: dict, message: str) -> None:
    """A failed run entry for a run refused before it started, in a ledger that exists (a first
    run's mistyped --restricted gets none)."""
    import datetime as dt
    import uuid

    from flows.pipeline.record import triggered_by
    from flows.storage import ledger
    from flows.storage.entries import RunEntry

    if not ledger.entries(restricted):
        return
    now = dt.datetime.now(dt.UTC)
    ledger.append(
        restricted,
        RunEntry(
            run_id=now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6],
            started_at=now.isoformat(timespec="seconds"),
            ended_at=now.isoformat(timespec="seconds"),
            status="failed",
            message=f"nothing read or published: {message}",
            triggered_by=triggered_by("cli: tuomin run"),
            parameters={"landing": area.url},
            policies={s: {"file": pol.path.name, "sha256": pol.sha256} for s, pol in policies.items()},
            key_id="",
            errors=[message],
        ),
    )


def restricted(path: Path) -> Path:
    """A restricted area that holds a ledger. Commands that record what they do in it, or act on
    what it records, refuse a mistyped --restricted rather than start a new ledger there."""
    from flows.storage.ledger import LEDGER

    if not (path / LEDGER).is_file():
        raise UsageError(f"--restricted {path}: no ledger at {path / LEDGER}; wrong --restricted? (`tuomin run` creates one)")
    return path
