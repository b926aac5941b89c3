"""Every error tuomin raises on purpose, in one tree at the bottom of the house (transforms imports
nothing above it, so every room can raise these):

    TuominError    something tuomin refused or could not do; the message names what and where
                   (a file, column, unit, check or partition), in a line, and never a value
      Refused      not done, nothing changed: a wrong key, policy, path, date or request, a
                   ledger that cannot be trusted, a destructive step that does not match what
                   the ledger recorded. The CLI prints it in one line and exits 2
      (others)     a run or step that failed after it started (a release that cannot be
                   published, an erasure or purge left incomplete): exit 1, with the ledger
                   saying what was done
    Transient      a mark, beside either branch, for what may succeed if tried again unchanged
                   (another run holds the warehouse)

Each class keeps the built-in base it had (ValueError, RuntimeError) so that code catching those
still does.
"""

from __future__ import annotations


class TuominError(Exception):
    """Something tuomin refused or could not do; the message names what and where, never a value."""


class Refused(TuominError):
    """Not done, and nothing changed: the CLI prints the message in one line and exits 2."""


class Transient(TuominError):
    """May succeed if tried again unchanged (a mark, combined with Refused or a failure)."""


def few(names: list[str], most: int = 5, width: int = 40) -> str:
    """Names for a message that stays one line however many there are: the first `most`, each cut
    to `width` characters, then how many more (a file with 10,000 unknown columns is one line)."""
    shown = [name if len(name) <= width else name[: width - 1] + "…" for name in names[:most]]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return "[" + ", ".join(repr(name) for name in shown) + "]" + more
