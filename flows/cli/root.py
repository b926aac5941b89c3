"""The root of the `tuomin` command line: the app every command group adds its commands to, how
every command fails (`Commands`), and what they share: the options (every command that reads
exports, the warehouse or the restricted area takes --landing, --warehouse and --restricted with
the same defaults as `tuomin run`), the consoles, dates as typed, a flow run's outcome."""

from __future__ import annotations

import datetime as dt
import os
import traceback
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from flows.runtime import environment
from transforms.errors import Refused, Transient

environment.configure()  # before Prefect is imported anywhere


TEMPORARY = 75  # the exit code of a refusal that may not recur (transforms.errors.Transient)


class Commands(TyperGroup):
    """How every command fails: a refusal (transforms.errors.Refused: a wrong key, policy, path or
    date, a ledger that cannot be trusted, a destructive step that does not match what the ledger
    recorded) is one line and exit code 2, with nothing changed (75 where it is Transient: another
    run holds the warehouse); anything else is a traceback with identifier-shaped text masked, and
    exit code 1."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _flags_take_no_value(self)

    def get_params(self, ctx):  # the completion flags typer adds to the root after __init__
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False):
                param.metavar = ""
        return params

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except typer.BadParameter as exc:  # a bad value: one line, like the refusals
            _refuse(exc.format_message())
        except (typer.Exit, typer.Abort, typer.TyperException):  # usage, confirmation, exit codes: typer's own
            raise
        except BrokenPipeError:  # the reader stopped reading (`| head`): stop quietly, as Unix tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing more reaches the closed pipe at exit
            raise typer.Exit(141) from None
        except Exception as exc:  # noqa: BLE001  (sorted below: a refusal, or a failure)
            if isinstance(exc, Refused):  # not done, nothing changed (transforms/errors.py)
                _refuse(exc)
            from flows.runtime.logfilter import mask

            errors.print(mask(traceback.format_exc()), markup=False, highlight=False)
            raise typer.Exit(1) from None


def _flags_take_no_value(command) -> None:
    """Help shows a flag (`--all`, `--no-backup`, `--help`) as taking no value: typer's rich help
    gave each a `<bool>` column that `--all true` then refuses. Every command and group below."""
    for param in command.params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    original = command.get_help_option

    def help_option(ctx):
        option = original(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        _flags_take_no_value(sub)


def _refuse(reason: Exception | str) -> NoReturn:
    from flows.runtime.logfilter import mask

    errors.print(f"[bold red]refused[/]: {mask(str(reason))}", highlight=False, soft_wrap=True)
    # EX_TEMPFAIL (sysexits.h) where the same command may succeed later unchanged: what a cron
    # wrapper retries; 2 where the command itself must change.
    raise typer.Exit(TEMPORARY if isinstance(reason, Transient) else 2)


app = typer.Typer(
    help="De-identify the shop's exports into validated, k-anonymous Parquet.",
    no_args_is_help=True,
    cls=Commands,
    pretty_exceptions_show_locals=False,
)
# Tables fit 110 columns when piped; lines of text are never wrapped (a path cut in two cannot be pasted).
console = Console(width=None if Console().is_terminal else 110, soft_wrap=True)
errors = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 110, soft_wrap=True)

# A path or any fsspec URL (s3://…, sftp://…, memory://…): a string, so that a URL is not made a local path.
Landing = Annotated[
    str, typer.Option(help="Landing area (a directory or an fsspec URL) with pos/, membership/, after_sales/, requests/.")
]
Warehouse = Annotated[
    Path, typer.Option("--warehouse", help="Warehouse directory of the anonymized Parquet (what analysts read).")
]
Restricted = Annotated[
    Path,
    typer.Option(
        "--restricted", help="Restricted area (0700): the ledger, GX results, quarantined rows, backups (created if new)."
    ),
]


def _with_ledger(path: Path) -> Path:
    from flows.cli import usage

    return usage.restricted(path)


# Commands that act on what the ledger records, or record what they do in it, need one that exists.
Vault = Annotated[
    Path,
    typer.Option(
        "--restricted",
        callback=_with_ledger,
        help="Restricted area holding the ledger (0700), GX results, quarantine and backups.",
    ),
]
Policies = Annotated[Path, typer.Option(help="Directory of reviewed policy files.")]

AsOf = Annotated[str | None, typer.Option(help="Plan as if today were this date (YYYY-MM-DD, Shanghai); only with --dry-run.")]


def plan_date(value: str | None, dry_run: bool) -> dt.date | None:
    if value is None:
        return None
    if not dry_run:
        raise typer.BadParameter("--as-of only plans (with --dry-run); deletions always use today's date")
    return check_date(value)


def finish(state, done) -> None:
    """Print a flow's outcome; a flow run refused (nothing done) exits as every refusal does, in
    one line (2, or 75 to try again later); one that failed exits 1."""
    if not state.is_completed():
        raised = state.result(raise_on_failure=False)
        if isinstance(raised, Refused):
            _refuse(raised)
        console.print(f"[bold red]FAILED[/]: {state.message}")
        raise typer.Exit(1)
    console.print(done(state.result()))


def check_date(value: str) -> dt.date:
    """An export date as typed: parsed once, here (flows/pipeline/parameters.day), into a dt.date."""
    from flows.pipeline.parameters import day

    try:
        return day(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


def print_whole(table: Table) -> None:
    """A table on the terminal as usual; piped, as wide as its widest row (never squeezed to 110
    columns, where a path or a value would be cut)."""
    width = None if console.is_terminal else max(110, Console(width=1 << 16).measure(table).maximum)
    Console(width=width, soft_wrap=True).print(table)
