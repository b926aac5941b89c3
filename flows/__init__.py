"""The application layer: Prefect flows and the I/O edges around the pure transforms.

    cli/         the `tuomin` command line (parses, calls one function per command, prints) and
                 `tuomin serve`'s deployments
    pipeline/    one export date from landing to published partitions: the anonymize-exports flow,
                 its two passes, the release gate, what is recorded with each partition
    storage/     where data lives: the landing area, the warehouse, the ledger, keys, backups
    closing/     closing the shop: erasure and subjects' requests, purge, retention, review
    evidence/    what the compliance officer shows: the evidence pack and the PIA draft
    onboarding/  a new export: profile it and propose a policy (`tuomin classify`)
    runtime/     what every process shares: default paths, Prefect settings, the calendar,
                 log masking, progress, failure points for tests

Any process that imports them (the CLI, a deployment's worker, a Dask worker, the tests) has
tuomin's Prefect settings (flows/runtime/environment.py) and masks identifiers in its log records
(flows/runtime/logfilter.py)."""

from flows.runtime import environment, logfilter

environment.configure()  # before Prefect is imported anywhere
logfilter.install()
