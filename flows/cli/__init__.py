"""The `tuomin` command line, one module per command group (as Prefect's CLI): `root` holds the
app, how every command fails, and the options every command shares (--landing, --warehouse,
--restricted with the defaults of `tuomin run`); each other module adds its commands to it.

run       run, backfill                 onboard   generate, classify
measure   assess, risk                  analysis  query, docs, dp
closing   purge, retention, review, report
serve     serve (deploy.py: what it serves)
key, ledger, subjects, backup: the command groups of the same names."""

from flows.cli import run, onboard, measure, analysis, serve, closing, key, ledger, subjects, backup  # noqa: F401, I001  (the order of --help)
from flows.cli.root import app

__all__ = ["app"]
