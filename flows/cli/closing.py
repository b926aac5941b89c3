"""The closing commands: `tuomin purge`, `retention`, `review` and `report`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.table import Table

from flows.cli.root import (
    AsOf,
    Policies,
    Vault,
    Warehouse,
    app,
    check_date,
    console,
    finish,
    plan_date,
    print_whole,
)
from flows.runtime import paths
from flows.storage import landing as landing_io
from transforms.policy import load_policies


@app.command()
def purge(
    landing: Annotated[
        str, typer.Option(help="Landing area to delete from, a directory or an fsspec URL (required: no default for deletions).")
    ],
    warehouse: Warehouse = paths.WAREHOUSE,
    restricted: Vault = paths.RESTRICTED,
    policies: Policies = paths.POLICIES,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be deleted and what is kept, and why; delete nothing.")
    ] = False,
    as_of: AsOf = None,
    as_json: Annotated[bool, typer.Option("--json", help="With --dry-run: the plan and its totals as JSON.")] = False,
) -> None:
    """Delete raw data that validated partitions replace, with a certificate per date.

    The raw exports, quarantined rows, work files and backups of a date go once its partitions are
    published and validated and its grace period is over; backups last, once the raw files are
    verified gone. Refused, with nothing deleted, when the landing does not hold the files the
    ledger records the partitions as made from, or the ledger cannot be trusted."""
    from flows.closing import purge as purging

    if as_json and not dry_run:
        raise typer.BadParameter("--json goes with --dry-run (a purge prints its certificates)", param_hint="--json")
    if dry_run:
        from flows.runtime.clock import today

        day = plan_date(as_of, dry_run) or today()
        area, rules = landing_io.existing(landing), load_policies(policies)
        from flows.storage import ledger

        ledger.writable(restricted)  # no plan from a ledger that does not verify: what it would delete rests on it
        planned = purging.report(purging.plan(area, warehouse, restricted, rules, day), day)
        if as_json:
            print(json.dumps(planned, ensure_ascii=False))
        else:
            _print_plan(planned)
        purging.check_landing(area, purging.mismatches(area, restricted))
        return
    purging.preflight(landing, warehouse, restricted, policies)
    state = purging.purge(
        landing=str(landing),
        warehouse=str(warehouse),
        restricted=str(restricted),
        policies=str(policies),
        trigger="cli: tuomin purge",
        return_state=True,
    )
    finish(
        state,
        lambda done: (
            f"{len(done)} date(s) purged"
            + "".join(
                f"\n  {d['export_date']}: {d['files']} file(s) deleted ("
                + ", ".join(
                    f"{a} {x['deleted']}" + (f", {x['not_deleted']} not" if x["not_deleted"] else "")
                    for a, x in d["areas"].items()
                )
                + f"), certificate = ledger entry {d['ledger_seq']}"
                for d in done
            )
        ),
    )


def _print_plan(planned: dict) -> None:
    """A purge plan as a table, every path whole (a path cut with … cannot be checked), then its totals."""
    table = Table(title=f"purge plan as of {planned['as_of']}: nothing is deleted")
    for header in ("export date", "decision", "files (area, bytes, path)", "why"):
        table.add_column(header, overflow="fold")
    for d in planned["dates"]:
        files = "\n".join(f"{f['area']} {f['bytes']} {f['path']}" for f in d["files"]) or "\n".join(d["not_in_landing"])
        table.add_row(d["export_date"], "keep" if d["decision"] == "keep" else "[red]delete[/]", files, d["why"])
    print_whole(table)
    t = planned["totals"]
    console.print(
        f"to delete: {t['files_to_delete']} file(s), {t['bytes_to_delete']} bytes, in {t['dates_to_delete']} date(s); "
        f"{t['dates_kept']} date(s) kept"
    )


@app.command()
def retention(
    warehouse: Warehouse = paths.WAREHOUSE,
    restricted: Vault = paths.RESTRICTED,
    policies: Policies = paths.POLICIES,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the partitions past their retention period; delete nothing.")
    ] = False,
    as_of: AsOf = None,
) -> None:
    """Delete the published partitions past their dataset's retention period (recorded in the ledger).

    Refused, with nothing removed, if the ledger cannot be trusted or a partition to remove is not
    the file the ledger recorded."""
    from flows.closing import retention as retaining
    from flows.runtime.clock import today

    day = plan_date(as_of, dry_run) or today()
    if dry_run:
        load_policies(policies)
        items, orphans = retaining.expired(restricted, policies, day)
        for item in items:
            console.print(f"{item.entry.data.dataset} {item.entry.data.period}: kept until {item.keep_until}, would be removed")
        for orphan in orphans:
            console.print(f"[red]{orphan}: no policy, retention unknown[/]")
        console.print(f"{len(items)} partition(s) past retention as of {day}")
        return
    retaining.preflight(warehouse, restricted, policies, day)
    state = retaining.retention(
        warehouse=str(warehouse),
        restricted=str(restricted),
        policies=str(policies),
        trigger="cli: tuomin retention",
        return_state=True,
    )
    finish(state, lambda removed: f"{len(removed)} partition(s) removed past their retention period")


@app.command()
def review(
    warehouse: Warehouse = paths.WAREHOUSE, restricted: Vault = paths.RESTRICTED, policies: Policies = paths.POLICIES
) -> None:
    """Re-validate every published dataset as a whole; exit 1 on any failure.

    Files against the ledger, policy hashes, k, l and the identifier scan over all partitions;
    the result is recorded in the ledger."""
    from prefect.client.schemas.objects import State

    from flows.closing import review as reviewing
    from flows.storage import ledger

    reviewing.preflight(policies)
    ledger.writable(restricted)  # a review is recorded: not in a ledger that does not verify (one line, exit 2)
    state = cast(
        State,
        reviewing.review(
            warehouse=str(warehouse),
            restricted=str(restricted),
            policies=str(policies),
            trigger="cli: tuomin review",
            return_state=True,
        ),
    )
    summary = state.result(raise_on_failure=False)
    if isinstance(summary, reviewing.Review):
        for name, result in summary.datasets.items():
            unique = result.linkage["profile_unique_share"] if result.linkage else None
            console.print(
                f"{name}: {result.partitions} partition(s), {result.rows} rows: "
                + ("[green]ok[/]" if result.success else "[bold red]FAILED[/]")
                + (f"; {unique:.1%} of customers have a unique profile across partitions" if unique is not None else "")
            )
        for problem in summary.problems:
            console.print(f"[red]{problem}[/]")
    finish(state, lambda s: f"review passed (ledger entry {s.ledger_seq})")


@app.command()
def report(
    out: Annotated[Path, typer.Option(help="Directory for report.html and report.json.")],
    warehouse: Warehouse = paths.WAREHOUSE,
    restricted: Vault = paths.RESTRICTED,
    policies: Policies = paths.POLICIES,
    start: Annotated[str | None, typer.Option(help="First export date of the period.")] = None,
    end: Annotated[str | None, typer.Option(help="Last export date of the period.")] = None,
) -> None:
    """Write the evidence pack: a self-contained HTML report and the same facts as JSON.

    Per dataset the policy, row counts, k and l, risk and loss, validation results, plots; the
    backups, deletions, key events and reviews with their ledger hashes; a draft impact assessment
    outline. No data value."""
    from flows.evidence.facts import collect
    from flows.evidence.report import write

    first, last = (check_date(d) if d else None for d in (start, end))
    if first and last and first > last:
        raise typer.BadParameter(f"--start {first} is after --end {last}: no pack written")
    facts = collect(warehouse, restricted, policies, first, last)
    if (first or last) and facts["period"]["first"] is None:  # a pack of zeros would "pass every check"
        from flows.cli.usage import UsageError

        raise UsageError(f"no partition was published from {first or 'the first date'} to {last or 'the last'}: no pack written")
    page, data = write(facts, out)
    console.print(f"evidence pack: {page} and {data}")
    verified = facts["ledger"]
    if not verified["intact"] or verified["head"] is None:  # never intact when there was nothing to verify
        console.print(f"[bold red]the ledger is NOT verified[/]: {'; '.join(verified['problems'])}; the report says so")
        raise typer.Exit(1)
    console.print(f"ledger head recorded in the pack: entry {verified['head']['seq']} hash {verified['head']['hash']}")
