"""DuckDB over the warehouse: one view per dataset (all its partitions, with export_date from the
path) and `partitions` (every published file's own metadata, flattened for querying: what it is,
under which policy and key, at what k); and CSV output that a spreadsheet opens as text. The
ledger is not here: it is in the restricted area (`tuomin ledger show`)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd


def connect(warehouse: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    files = []
    for folder in sorted(warehouse.glob("dataset=*")):
        name = folder.name.split("=", 1)[1]
        if not any(folder.glob("export_date=*/*.parquet")):
            continue  # every partition removed (retention): no view
        files.append(f"'{folder.as_posix()}/export_date=*/*.parquet'")
        con.execute(f"""CREATE VIEW "{name}" AS SELECT * FROM read_parquet('{folder.as_posix()}/export_date=*/*.parquet',
                        hive_partitioning = true, union_by_name = true)""")
    if files:
        con.execute(f"""CREATE VIEW partitions AS
            SELECT regexp_extract(file_name, 'dataset=([^/]+)', 1) AS dataset,
                   CAST(regexp_extract(file_name, 'export_date=([^/]+)', 1) AS DATE) AS export_date,
                   m->>'run_id' AS run_id, CAST(m->'rows'->>'published' AS BIGINT) AS rows_published,
                   CAST(m->>'k' AS INTEGER) AS k, CAST(m->'metrics'->>'k' AS INTEGER) AS k_achieved,
                   CAST(m->'metrics'->>'l_distinct' AS INTEGER) AS l_achieved, m->'levels' AS levels,
                   m->>'policy_sha256' AS policy_sha256, m->>'key_id' AS key_id, m->>'unit' AS unit,
                   CAST(m->>'created_at' AS TIMESTAMPTZ) AS published_at
            FROM (SELECT file_name, CAST(decode(value) AS JSON) AS m
                  FROM parquet_kv_metadata([{", ".join(files)}]) WHERE decode(key) = 'tuomin')""")
    return con


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what makes a spreadsheet read a cell as a formula


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would run as a formula (`=HYPERLINK(…)` typed into a complaint)
    prefixed with a quote, as OWASP advises for CSV: analysts open exports in Excel. Numbers and
    dates are left as they are."""
    safe = frame.copy()
    for name in safe.columns:
        column = safe[name]
        if column.dtype == object or pd.api.types.is_string_dtype(column):
            text = column.astype("string")
            risky = text.str.startswith(FORMULA_START).fillna(False).astype(bool)
            safe[name] = column.where(~risky, "'" + text)
    return safe
