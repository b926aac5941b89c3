"""`tuomin subjects`: data subjects' requests (a copy, an erasure) and closure notices."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.root import (
    Landing,
    Policies,
    Vault,
    Warehouse,
    app,
    console,
)
from flows.runtime import paths
from flows.storage.entries import ErasureRequestedEntry
from transforms.policy import load_policies

subjects_app = typer.Typer(help="Data subjects' requests: a copy of their records, or their erasure.", no_args_is_help=True)
app.add_typer(subjects_app, name="subjects")


DocNo = Annotated[str | None, typer.Option("--doc-no", help="The person's document number (resident ID, passport, permit).")]
Mobile = Annotated[
    str | None, typer.Option("--mobile", help="The person's mobile (+86, spaces, dashes, full-width digits all fine).")
]
MemberNo = Annotated[str | None, typer.Option("--member-no", help="The person's member number.")]


def _identifier(doc_no: str | None, mobile: str | None, member_no: str | None):
    from flows.closing.subjects import Identifier, SubjectError
    from transforms.identifiers import SUBJECT_IDENTIFIERS

    given = [(k, v) for k, v in zip(SUBJECT_IDENTIFIERS, (doc_no, mobile, member_no)) if v]
    if len(given) != 1:
        raise typer.BadParameter("name the person by exactly one of --doc-no, --mobile, --member-no")
    try:
        return Identifier.parse(*given[0])
    except SubjectError as exc:
        raise typer.BadParameter(str(exc)) from None


@subjects_app.command("lookup")
def subjects_lookup(
    out: Annotated[Path, typer.Option(help="Folder for the person's file (created owner-only; the file is raw personal data).")],
    doc_no: DocNo = None,
    mobile: Mobile = None,
    member_no: MemberNo = None,
    landing: Landing = str(paths.SAMPLE_LANDING),
    warehouse: Warehouse = paths.WAREHOUSE,
    restricted: Vault = paths.RESTRICTED,
    policies: Policies = paths.POLICIES,
) -> None:
    """Every record of one person in the raw exports still held, as one file (access request)."""
    from flows.cli import usage
    from flows.closing.subjects import access
    from flows.storage.keys import load_pseudonymizer

    who = _identifier(doc_no, mobile, member_no)
    done = access(usage.landing(landing), load_policies(policies), restricted, who, out, load_pseudonymizer())
    found, path, entry, newest = done.found, done.path, done.entry, done.newest
    if path is None:
        console.print(f"no record of this person in the exports under {landing}; nothing written (ledger entry {entry.seq})")
        return
    sources = sorted({f.source for f in found})
    console.print(
        f"{len(found)} record(s) ({', '.join(sources)}) -> {path} (owner-only: raw personal data, for the person "
        f"only; `tuomin purge` deletes it with the raw data of {newest}, the newest date it copies). "
        f"Ledger entry {entry.seq}."
    )


@subjects_app.command("erase")
def subjects_erase(
    doc_no: DocNo = None,
    mobile: Mobile = None,
    member_no: MemberNo = None,
    landing: Landing = str(paths.SAMPLE_LANDING),
    warehouse: Warehouse = paths.WAREHOUSE,
    restricted: Vault = paths.RESTRICTED,
    policies: Policies = paths.POLICIES,
    flush: Annotated[
        bool,
        typer.Option(
            "--flush",
            help="Carry out every held request now, even fewer than a batch (k): the copies before and after then "
            "differ by the rows of fewer than k people, which can be told apart. For a deadline; recorded as such.",
        ),
    ] = False,
) -> None:
    """Erase one person: put them on requests/erasure.csv, held until a batch of k requests (the
    policies' largest k) has formed; then, while the pseudonym key exists, remove the whole batch
    from every partition already published (each republished atomically, k and l validated
    again), and the next run leaves them out of everything it publishes. A batch, not a person: the
    copies before and after differ by the rows of at least k people. Recorded in the ledger
    whatever happens (held, done, partial or failed); repeating it finishes what is left."""
    from pydantic import SecretStr

    from flows.cli import usage
    from flows.closing.erasure import erase_subject

    who = _identifier(doc_no, mobile, member_no)
    usage.landing(landing)  # both checked before Prefect starts: a mistyped path fails in a line
    load_policies(policies)
    state = erase_subject(
        who.kind,
        SecretStr(who.value),
        str(landing),
        str(warehouse),
        str(restricted),
        str(policies),
        "tuomin subjects erase",
        flush,
        return_state=True,
    )
    entry = state.result()  # a failure the request could not record (no key) is raised as it was
    done = entry.data
    if done.listed and done.status == "held":
        console.print(
            ("added to" if done.added else "already on")
            + f" requests/erasure.csv, held: {done.held} request(s) wait for a batch of k. Published data and "
            "the next runs keep this person until the batch forms (its removal would single them out); "
            "`--flush` carries out the held requests now."
        )
    elif done.listed:
        console.print(
            ("added to" if done.added else "already on")
            + f" requests/erasure.csv, in a batch of {done.people}"
            + (" (flushed: fewer than k, the removal can be told apart)" if done.flushed else "")
            + ". The erasure list is part of every date's fingerprint: the next `tuomin run` republishes each "
            "date whose raw files are still held without the batch."
        )
    if done.subject is None:
        console.print(
            "The pseudonym key was destroyed (see the ledger): the published data can no longer be linked to this "
            "person or anyone else, which is what anonymization means; nothing published needs removing."
        )
    else:
        _print_sweep(who, done)
    completed = done.retry_of + done.completes
    if completed and done.status == "done":
        console.print(
            f"This completes the request of ledger entr{'y' if len(completed) == 1 else 'ies'} {', '.join(map(str, completed))}."
        )
    console.print(f"Request {done.status}: ledger entry {entry.seq}.")
    if done.failed:
        raise typer.Exit(1)


def _print_sweep(who, done: ErasureRequestedEntry) -> None:
    if done.tokens == 0:
        console.print(
            f"Published data names customers only by the keyed token of their document number, and no raw record "
            f"still held links this {who.kind} to one: the published partitions cannot be searched for this "
            "person. Ask them for their document number and repeat with --doc-no."
        )
    for x in done.republished:
        console.print(
            f"{x.dataset} {x.period}: republished without the batch: {x.erased} row(s) "
            f"erased, {x.suppressed} more suppressed ({x.classes_suppressed} class(es) left below k or l); "
            f"ledger entry {x.ledger_seq}"
        )
    if done.batch and done.tokens and not done.republished and not done.failed:
        console.print("No published partition holds this batch.")
    for other in done.not_searched:
        console.print(
            f"[yellow]{other['dataset']} {other.get('period') or other['export_date']}: "
            f"published under key {other['key_id']}, not this "
            "one: not searched[/]"
        )
    if done.failed:
        console.print(
            f"[red]{done.failed}[/]. "
            + ("The person stays on the erasure list; fix" if done.listed else "Nothing was changed; fix")
            + " the cause and repeat this command (partitions already done are not redone)."
        )


@subjects_app.command("notify")
def subjects_notify(
    out: Annotated[Path, typer.Option(help="Folder for sms.csv and email.csv (created owner-only: raw mobiles and e-mails).")],
    closing_date: Annotated[str, typer.Option(help="The day the shop stops trading (2026-12-31 or 2026年12月31日).")],
    delete_by: Annotated[
        str, typer.Option(help="The day by which personal data is deleted: after --requests-by, not before the closing.")
    ],
    requests_by: Annotated[str, typer.Option(help="The last day to ask for a copy or for deletion: after today.")],
    contact: Annotated[str, typer.Option(help="How to ask (a phone number, an address, an e-mail).")],
    shop: Annotated[str, typer.Option(help="The shop's name as customers know it.")] = "本公司",
    landing: Landing = str(paths.SAMPLE_LANDING),
    warehouse: Warehouse = paths.WAREHOUSE,
    restricted: Vault = paths.RESTRICTED,
    policies: Policies = paths.POLICIES,
) -> None:
    """Closure notices for every member of the latest CRM snapshot with a mobile or an e-mail."""
    from flows.cli import usage
    from flows.closing.subjects import Closure, notify
    from flows.runtime.clock import today

    closure = Closure.parse(shop, closing_date, delete_by, requests_by, contact, today())
    counts, entry = notify(usage.landing(landing), load_policies(policies), restricted, closure, out)
    console.print(
        f"CRM snapshot {counts['snapshot']}: {counts['members']} member(s); {counts['sms']} SMS and {counts['email']} "
        f"e-mail notice(s) -> {out} (owner-only; deleted by `tuomin purge` with that date's raw data); "
        f"{counts['erased']} on the erasure list and {counts['unreachable']} without a mobile or e-mail not "
        f"notified. Ledger entry {entry.seq}."
    )
