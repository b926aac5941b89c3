"""DuckDB over the warehouse: one view per dataset (all its partitions, with each row's unit,
`period`, from the path) and `partitions` (every published file's own metadata, flattened for querying: what it is,
under which policy and key, at what k); and CSV output that a spreadsheet opens as text. The
ledger is not here: it is in the restricted area (`tuomin ledger show`).

The analysts' connection is confined to the warehouse: DuckDB reads no file outside it (the raw
landing, the restricted area), installs and loads no extension, attaches no database, and its
settings are locked. `read_only` runs one SELECT and nothing else (not EXPLAIN: EXPLAIN ANALYZE
runs what it explains), wrapped in a SELECT of its own, so nothing is written, not even into the
warehouse (COPY … TO); it stops a query past its time (`Limits.seconds`, interrupted) or its memory
(`Limits.memory`, DuckDB's memory_limit, no spilling) with a one-line QueryRefused. `connect`
refuses a folder that is not a warehouse (no partition with tuomin's metadata): `--warehouse /`
would otherwise make every file readable."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flows.storage import dictionary
from transforms.errors import Refused

PATH_COLUMNS = {  # what the views add from each file's path (hive partitioning)
    "dataset": "The dataset (the source system's export) the row belongs to.",
    "period": "The unit the row belongs to: the business day (a DATE; or week, month) of its own date, or the snapshot's date.",
}


class QueryRefused(Refused, ValueError):
    """A statement that does more than read the warehouse, or a query past its limits."""


class NotAWarehouse(Refused, ValueError):
    """A folder with no partition tuomin published."""


@dataclass(frozen=True)
class Limits:
    """What one analyst's query may use: wall-clock seconds and DuckDB memory."""

    seconds: float = 300.0
    memory: str = "2GB"


def read_only(con: duckdb.DuckDBPyConnection, sql: str, limits: Limits = Limits()) -> pa.Table:  # noqa: B008  (frozen)
    """The result of `sql` if it is one SELECT (a CTE included); QueryRefused (nothing run) for any
    other statement, and for a query stopped at its limits (see the module's docstring)."""
    statements = con.extract_statements(sql)
    kinds = sorted({s.type.name for s in statements if s.type != duckdb.StatementType.SELECT})
    if kinds or len(statements) != 1:
        raise QueryRefused(
            f"one SELECT runs here; refused: {', '.join(kinds) or f'{len(statements)} statements'} (nothing was run)"
        )
    timer = threading.Timer(limits.seconds, con.interrupt)
    timer.start()
    try:  # a statement of its own can only be a SELECT inside another
        text = re.sub(r";\s*(--[^\n]*)?\s*$", "", statements[0].query.strip())  # its own end: one statement
        return arrow(con.sql(f"SELECT * FROM (\n{text}\n)"))  # on lines of their own: a trailing -- comment ends there
    except duckdb.InterruptException:
        raise QueryRefused(f"the query ran past {limits.seconds:g} s and was stopped: narrow it (a filter, a LIMIT)") from None
    except duckdb.OutOfMemoryException:
        raise QueryRefused(f"the query needed more than {limits.memory} of memory and was stopped: narrow it") from None
    finally:
        timer.cancel()


def _literal(text: str) -> str:
    return text.replace("'", "''")  # COMMENT ON takes a string literal, not a parameter


# Generalized numbers are published as band labels ('[1000, 5000)', '>=50000', '30-39', '<0');
# the views add each band's bounds as numbers, half-open [lower, upper), NULL where unbounded or
# suppressed, so that bands sort and compare as numbers.
BANDS = ("bands with edges", "days after the row's business date, bands", "-year age bands", "age in years")
LOWER = """CASE WHEN {v} LIKE '<%' THEN NULL WHEN {v} LIKE '>=%' THEN TRY_CAST(substr({v}, 3) AS DOUBLE)
    WHEN {v} LIKE '[%' THEN TRY_CAST(regexp_extract({v}, '^\\[([^,]+),', 1) AS DOUBLE)
    WHEN regexp_matches({v}, '^-?[0-9.]+-[0-9.]+$') THEN TRY_CAST(regexp_extract({v}, '^(-?[0-9.]+)-', 1) AS DOUBLE)
    ELSE TRY_CAST({v} AS DOUBLE) END"""
UPPER = """CASE WHEN {v} LIKE '<%' THEN TRY_CAST(substr({v}, 2) AS DOUBLE) WHEN {v} LIKE '>=%' THEN NULL
    WHEN {v} LIKE '[%' THEN TRY_CAST(regexp_extract({v}, ',\\s*([^)]+)\\)$', 1) AS DOUBLE)
    WHEN regexp_matches({v}, '^-?[0-9.]+-[0-9.]+$') THEN TRY_CAST(regexp_extract({v}, '-([0-9.]+)$', 1) AS DOUBLE) + 1
    ELSE TRY_CAST({v} AS DOUBLE) + 1 END"""


def _banded(dataset: dictionary.Dataset) -> list[str]:
    """The dataset's columns published as band labels (by the level meaning their files record)."""
    return [c["column"] for c in dataset["columns"] if any(b in lv["meaning"] for b in BANDS for lv in c["levels"])]


def _bounds(column: str) -> str:
    quoted = f'"{column}"'
    lower, upper = LOWER.format(v=quoted), UPPER.format(v=quoted)
    return f', {lower} AS "{column}_lower", {upper} AS "{column}_upper"'


def connect(warehouse: Path, confined: bool = True, limits: Limits = Limits()) -> duckdb.DuckDBPyConnection:  # noqa: B008
    if not warehouse.is_dir():
        raise NotAWarehouse(f"--warehouse {warehouse}: no such folder; nothing was read")
    built = dictionary.build(warehouse, values=False)
    described = built["datasets"]
    if confined and not described and not built["dp_tables"]:
        raise NotAWarehouse(
            f"--warehouse {warehouse}: no partition tuomin published (dataset=<name>/period=<unit>/*.parquet with "
            "tuomin's metadata): not a warehouse; nothing was read"
        )
    con = duckdb.connect()
    files = []
    for name, dataset in described.items():
        folder = warehouse / f"dataset={name}"
        files.append(f"'{folder.as_posix()}/period=*/*.parquet'")
        bounds = "".join(_bounds(c) for c in _banded(dataset))
        con.execute(f"""CREATE VIEW "{name}" AS SELECT *{bounds} FROM read_parquet('{folder.as_posix()}/period=*/*.parquet',
                        hive_partitioning = true, union_by_name = true)""")
    if files:
        con.execute(f"""CREATE VIEW partitions AS
            SELECT regexp_extract(file_name, 'dataset=([^/]+)', 1) AS dataset,
                   regexp_extract(file_name, 'period=([^/]+)', 1) AS period, m->>'grain' AS grain,
                   m->>'run_id' AS run_id, CAST(m->'rows'->>'published' AS BIGINT) AS rows_published,
                   CAST(m->>'k' AS INTEGER) AS k, CAST(m->'metrics'->>'k' AS INTEGER) AS k_achieved,
                   CAST(m->'metrics'->>'l_distinct' AS INTEGER) AS l_achieved, m->'levels' AS levels,
                   m->>'policy_sha256' AS policy_sha256, m->>'key_id' AS key_id, m->>'unit' AS unit,
                   CAST(m->>'created_at' AS TIMESTAMPTZ) AS published_at
            FROM (SELECT file_name, CAST(decode(value) AS JSON) AS m
                  FROM parquet_kv_metadata([{", ".join(files)}]) WHERE decode(key) = 'tuomin')""")
    for name, dataset in described.items():
        for banded in _banded(dataset):
            for end, text in (("lower", "inclusive"), ("upper", "exclusive")):
                note = f"The {end} bound ({text}) of {banded}'s band, from its label; NULL: unbounded, or suppressed."
                con.execute(f"""COMMENT ON COLUMN "{name}"."{banded}_{end}" IS '{_literal(note)}'""")
        for column in dataset["columns"]:  # the data dictionary's entry, for `duckdb_columns()` and DESCRIBE-like tools
            con.execute(f"""COMMENT ON COLUMN "{name}"."{column["column"]}" IS '{_literal(dictionary.comment(column))}'""")
        for path_column, text in PATH_COLUMNS.items():
            con.execute(f"""COMMENT ON COLUMN "{name}"."{path_column}" IS '{_literal(text)}'""")
    _dp_views(con, warehouse, built["dp_tables"])
    if confined:
        con.execute("SET allowed_directories = [?]", [warehouse.resolve().as_posix() + "/"])
        con.execute("SET enable_external_access = false")
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute("SET memory_limit = ?", [limits.memory])
        con.execute("SET max_temp_directory_size = '0B'")  # bound the work, never spill it to the disk
        con.execute("SET lock_configuration = true")
    return con


def _dp_views(con: duckdb.DuckDBPyConnection, warehouse: Path, tables: dict[str, dict[str, Any]]) -> None:
    """One view per DP table of the dictionary's `tables` (every release, `release` from the path)
    and `dp_tables`: each table's epsilon, bounds and noise as its file records them
    (flows/pipeline/dp.py)."""
    files = []
    for name, table in tables.items():
        pattern = f"{(warehouse / f'dataset={name}').as_posix()}/release=*/*.parquet"
        files.append(f"'{pattern}'")
        con.execute(f"""CREATE VIEW "{name}" AS SELECT * FROM read_parquet('{pattern}', hive_partitioning = true)""")
        con.execute(f"""COMMENT ON VIEW "{name}" IS '{_literal(table["measure"])}'""")
        for column in table["columns"]:
            con.execute(f"""COMMENT ON COLUMN "{name}"."{column["column"]}" IS '{_literal(column["meaning"])}'""")
    if files:
        con.execute(f"""CREATE VIEW dp_tables AS
            SELECT m->>'table' AS "table", m->>'release_id' AS release, m->>'source' AS source,
                   CAST(m->'grain' AS VARCHAR[]) AS grain, m->'measure'->>'kind' AS measure,
                   CAST(m->>'epsilon' AS DOUBLE) AS epsilon, CAST(m->>'release_epsilon' AS DOUBLE) AS release_epsilon,
                   CAST(m->>'spent_total' AS DOUBLE) AS spent_total, CAST(m->>'lifetime_epsilon' AS DOUBLE) AS lifetime_epsilon,
                   CAST(m->'review'->>'expected_error' AS DOUBLE) AS expected_error,
                   CAST(m->'bounds'->>'cells_per_person' AS INTEGER) AS cells_per_person,
                   CAST(m->'bounds'->>'rows_per_cell' AS INTEGER) AS rows_per_cell,
                   CAST(m->'bounds'->'clip' AS DOUBLE[]) AS clip, m->'measure'->'clip_by' AS clip_by,
                   m->'noise'->>'distribution' AS noise,
                   CAST(m->'noise'->>'scale' AS DOUBLE) AS scale, CAST(m->'noise'->>'margin_95' AS DOUBLE) AS margin_95,
                   m->'noise'->'by' AS noise_by,
                   CAST(CAST(m->'dates' AS VARCHAR[]) AS DATE[]) AS dates, m->>'library' AS library,
                   CAST(m->>'created_at' AS TIMESTAMPTZ) AS published_at
            FROM (SELECT CAST(decode(value) AS JSON) AS m
                  FROM parquet_kv_metadata([{", ".join(files)}]) WHERE decode(key) = 'tuomin')""")


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


OUTPUTS = (".csv", ".json", ".parquet")


def arrow(relation: duckdb.DuckDBPyRelation) -> pa.Table:
    """A result with DuckDB's types as they are (DATE a date, DECIMAL exact), unlike a DataFrame."""
    found = relation.arrow()
    return found.read_all() if isinstance(found, pa.RecordBatchReader) else found


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)  # exact, as stored: a float would round it
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def to_json_value(value: Any) -> str:
    """One value as JSON (a list or struct in a table cell)."""
    return json.dumps(value, ensure_ascii=False, default=_json_value)


def to_json(table: pa.Table) -> str:
    """The rows as a JSON array of objects: dates as ISO dates, decimals as exact strings."""
    return json.dumps(table.to_pylist(), ensure_ascii=False, default=_json_value)


def to_csv(table: pa.Table) -> str:
    """The rows as CSV a spreadsheet opens as text (spreadsheet_safe); a list or struct cell as JSON."""
    frame = table.to_pandas(date_as_object=True)
    for field in table.schema:
        if pa.types.is_nested(field.type):
            frame[field.name] = [None if v is None else to_json_value(v) for v in table[field.name].to_pylist()]
    return spreadsheet_safe(frame).to_csv(index=False)


def write(table: pa.Table, out: Path) -> None:
    """The result into a file, in the format its suffix names (.csv, .json, .parquet)."""
    if out.suffix == ".parquet":
        pq.write_table(table, out)
    elif out.suffix == ".json":
        out.write_text(to_json(table), encoding="utf-8")
    elif out.suffix == ".csv":
        out.write_text(to_csv(table), encoding="utf-8")
    else:
        raise ValueError(f"{out}: write a {', '.join(OUTPUTS)} file")
