"""Prefect flows, the I/O edges (landing, keys, warehouse) and the `tuomin` command line."""
