"""Defence in depth for logs: in a tuomin process, every log record (Prefect's flow and task run
loggers, their console and API handlers, any library's) has identifier-shaped text replaced by
placeholders when it is made: resident IDs and permits with valid check digits, mobiles,
e-mails, card numbers, passports and the like (the free-text detectors), also in the text of an
exception logged with it. A refusal (transforms/errors.py: nothing was done) and a full or
read-only disk are logged as their one line, without the traceback Prefect's engine attaches.
tuomin's own messages name files, rows and columns, never values; this is for what a library might
quote.

On the console only (flows/runtime/logging.yml), a task run's "Finished in state Completed()" is
left out: a run prints its stages, warnings, failures and flow states; the Prefect API still gets
every record."""

from __future__ import annotations

import errno
import logging

from transforms.errors import Refused
from transforms.redact import NameMatcher, redact_text

_NO_NAMES = NameMatcher([])  # names need the run's dictionary; a log line has none


def mask(text: str) -> str:
    """Identifier-shaped text replaced by placeholders (for anything printed, not only logs)."""
    return redact_text(text, _NO_NAMES)


STORAGE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}  # the disk is full, the quota reached, the file system read-only


def _said_in_one_line(exc: BaseException | None) -> bool:
    """An exception whose message says it all: a refusal, or the storage failing (its reason and
    file); a traceback would add only tuomin's and Prefect's frames."""
    return isinstance(exc, Refused) or (isinstance(exc, OSError) and exc.errno in STORAGE)


def install() -> None:
    """Wrap the process's log record factory once (idempotent), and turn off logging's report of
    a failing handler (a closed stream, a broken pipe): it prints the exception being handled,
    unmasked, chained to the handler's own."""
    logging.raiseExceptions = False
    previous = logging.getLogRecordFactory()
    if getattr(previous, "masks_identifiers", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and _said_in_one_line(record.exc_info[1]):
            record.exc_info, record.exc_text = None, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
        return record

    factory.masks_identifiers = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class CompletedTasks(logging.Filter):
    """The console's filter (flows/runtime/logging.yml): drops a task run's report that it completed."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name == "prefect.task_runs"
            and record.levelno == logging.INFO
            and record.getMessage().startswith("Finished in state Completed(")
        )
