"""Prefect flows, the I/O edges (landing, keys, warehouse) and the `tuomin` command line.

Any process that imports them (the CLI, a deployment's worker, a Dask worker, the tests) masks
identifiers in its log records (flows/logfilter.py)."""

from flows import logfilter

logfilter.install()
