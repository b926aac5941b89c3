"""DuckDB over the warehouse: one view per dataset (all its partitions, with export_date from the
path), `ledger` (every entry) and `partitions` (the latest entry of each partition still
published, flattened for querying); and CSV output that a spreadsheet opens as text."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from flows.ledger import LEDGER


def connect(warehouse: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for folder in sorted(warehouse.glob("dataset=*")):
        name = folder.name.split("=", 1)[1]
        if not any(folder.glob("export_date=*/*.parquet")):
            continue  # every partition removed (retention): no view
        con.execute(f"""CREATE VIEW "{name}" AS SELECT * FROM read_parquet('{folder.as_posix()}/export_date=*/*.parquet',
                        hive_partitioning = true, union_by_name = true)""")
    ledger = warehouse / LEDGER
    if ledger.exists():
        con.execute(f"CREATE VIEW ledger AS SELECT * FROM read_json('{ledger.as_posix()}', format = 'newline_delimited')")
        con.execute("""CREATE VIEW partitions AS
            SELECT data.dataset AS dataset, CAST(data.export_date AS DATE) AS export_date, data.run_id AS run_id,
                   data.rows.read AS rows_read, data.rows.published AS rows_published, data.rows.suppressed AS rows_suppressed,
                   data.rows.quarantined AS rows_quarantined, data.rows.erased AS rows_erased, data.k AS k,
                   data.k_achieved AS k_achieved, data.l_achieved AS l_achieved, data.policy_sha256 AS policy_sha256,
                   data.key_id AS key_id, data.output.sha256 AS output_sha256, data.published_at AS published_at,
                   seq AS ledger_seq, hash AS ledger_hash
            FROM (SELECT * FROM ledger WHERE kind IN ('partition', 'partition_removed')
                  QUALIFY row_number() OVER (PARTITION BY data.dataset, data.export_date ORDER BY seq DESC) = 1)
            WHERE kind = 'partition'""")
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
