"""The data dictionary: what each published column means, its type, the levels its partitions were
published at, its values where they are few, and which questions it can answer. Built from what
the warehouse's files record about themselves (their field metadata, flows/pipeline/record.py) and
the reviewed policies; written by `tuomin docs` as dictionary.json and dictionary.html, and carried
by the DuckDB views of `tuomin query` as column comments. The differentially private tables
(`tuomin dp`) have their own entries: grain, measure, and each release's epsilon and error bar.

Values are listed only for columns with few of them (categories, generalized labels); never for
tokens or free text, and never with counts (a count below k can point at a person).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, TypedDict

import duckdb
import jinja2
import pyarrow.parquet as pq

from flows.storage.footer import read_dp_record, read_record
from flows.storage.warehouse import DP_PREFIX, fields_of
from transforms.dp_policy import COLUMNS, MEANING
from transforms.policy import SourcePolicy
from transforms.workload import Score

TEMPLATES = Path(__file__).parent / "templates"
FEW = 30  # a column with at most this many distinct values lists them
NO_VALUES = {"pseudonymization", "redaction"}  # techniques whose values say nothing to list

QUESTIONS = {  # by role, then by technique: what a column can answer, and what it cannot
    "entity_key": "How many distinct customers are in one partition. Tokens are keyed per partition: "
    "the same customer has another token on another date or in another dataset, so customers cannot "
    "be followed across them.",
    "quasi_identifier": "Breakdowns and trends by this attribute, at the release's level (every partition of the "
    "dataset publishes it at the same level).",
    "sensitive_attribute": "Its distribution within groups of the other attributes, as far as the criteria it is "
    "held to leave it: no group makes its value certain.",
    "insensitive": "Totals, averages and distributions.",
    "free_text": "Counts by coded topic; the text itself is not published.",
    "direct_identifier": "None about a person: it is replaced before publishing.",
}

TOP = "*"  # a hierarchy's top: the value that says nothing
WHOLE = (
    "None: it holds only `*` in every partition (generalized to the top of its hierarchy to reach the "
    "privacy model), so nothing can be broken down by it."
)

DP_COLUMNS = {  # the columns every DP table has beside its grain
    **COLUMNS,
    "dataset": "The table's dataset, dp_<table> (from the file's path).",
    "release": "The DP release the row belongs to (each spent its own epsilon; `dp_tables`).",
}


class Level(TypedDict):
    level: int
    meaning: str
    partitions: int  # how many of the dataset's partitions were published at it


class Column(TypedDict):
    column: str
    meaning: str
    source_column: str
    type: str
    role: str
    technique: str
    levels: list[Level]
    values: list[str] | None  # None: too many to list, or a kind that lists none
    questions: str
    held_to: list[str]  # the criteria on the column, in words


class Answer(TypedDict):
    question: str
    ask: str
    answered: bool
    score: str  # workload.Score.line(): shares and errors in whole percents, never a cell's count
    run_id: str  # the run that scored it (its latest)


class Dataset(TypedDict):
    description: str
    partitions: int
    periods: list[str]
    person_record: str
    columns: list[Column]
    questions: list[Answer]  # the policy's declared questions, as the latest run that published the dataset scored them


class Dictionary(TypedDict):
    warehouse: str
    datasets: dict[str, Dataset]
    dp_tables: dict[str, dict[str, Any]]  # per DP table: measure, source, privacy unit, columns, releases


def build(
    warehouse: Path, policies: dict[str, SourcePolicy] | None = None, values: bool = True, runs: list[dict] | None = None
) -> Dictionary:
    """Every published dataset and its columns, from the files in `warehouse` (their values too,
    unless `values` is off: the view comments need none, and listing them reads the columns);
    with the ledger's run entries (`runs`), the declared questions as each dataset's latest run scored them."""
    datasets = {}
    for folder in sorted(warehouse.glob("dataset=*")):
        name = folder.name.split("=", 1)[1]
        files = sorted(folder.glob("period=*/*.parquet"))
        if files:
            datasets[name] = _dataset(files, (policies or {}).get(name), values)
            datasets[name]["questions"] = answers(runs or [], name)
    return Dictionary(warehouse=str(warehouse.resolve()), datasets=datasets, dp_tables=dp_tables(warehouse))


def dp_tables(warehouse: Path) -> dict[str, dict[str, Any]]:
    """Each DP table as its files describe it: what a cell counts, its columns, and per release
    the dates, epsilon and 95% error bar (public numbers: the release's, not the data's)."""
    found = {}
    for folder in sorted(warehouse.glob(f"dataset={DP_PREFIX}*")):
        files = sorted(folder.glob("release=*/*.parquet"))
        if not files:
            continue
        records = [read_dp_record(f) for f in files]
        last, schema = records[-1], pq.read_schema(files[-1])
        kind = last.measure["kind"]
        what = MEANING.get(kind, kind).format(column=last.measure.get("column") or last.source)
        meanings = {g: MEANING.get(g, "") for g in last.grain} | DP_COLUMNS
        found[folder.name.split("=", 1)[1]] = {
            "measure": f"{what}, by {' x '.join(last.grain)}.",
            "source": last.source,
            "privacy_unit": last.privacy_unit,
            "columns": [
                {"column": c, "meaning": meanings[c], "type": str(schema.field(c).type) if c in schema.names else "string"}
                for c in [*last.grain, *DP_COLUMNS]
            ],
            "releases": [
                {
                    "release": r.release_id,
                    "dates": {"first": min(r.dates), "last": max(r.dates), "count": len(r.dates)},
                    "epsilon": r.epsilon,
                    "release_epsilon": r.release_epsilon,
                    "spent_total": r.spent_total,
                    "lifetime_epsilon": r.lifetime_epsilon,
                    "expected_error": (r.review or {}).get("expected_error"),  # at the declared size (policy review)
                    "margin_95": r.noise.margin_95,
                    "cells_per_person": r.bounds.cells_per_person,
                }
                for r in records
            ],
        }
    return found


def _dataset(files: list[Path], policy: SourcePolicy | None, values: bool) -> Dataset:
    schemas = [pq.read_schema(f) for f in files]  # one footer read per file
    fields = [fields_of(schema) for schema in schemas]
    types: dict[str, Counter] = {}
    for schema in schemas:
        for column in schema:
            types.setdefault(column.name, Counter())[str(column.type)] += 1
    roles = {c.output_name: c for c in policy.columns if c.output_name} if policy else {}
    held_to = read_record(files[-1]).criteria()  # the criteria on sensitive columns, as the latest file records them
    con = duckdb.connect()
    columns = []
    for column, seen in types.items():
        about = next((f[column] for f in fields if column in f), {})
        levels: Counter = Counter(
            (f[column].get("level", ""), f[column].get("level_meaning", "")) for f in fields if "level" in f.get(column, {})
        )
        role = about.get("role") or (roles[column].role if column in roles else "")
        entry: Column = {
            "column": column,
            "meaning": about.get("purpose") or (roles[column].purpose if column in roles else ""),
            "source_column": about.get("source_column", ""),
            "type": " | ".join(sorted(seen)),
            "role": role,
            "technique": about.get("technique", ""),
            "levels": [Level(level=int(level), meaning=meaning, partitions=n) for (level, meaning), n in sorted(levels.items())],
            "values": None,
            "questions": QUESTIONS.get(role, ""),
            "held_to": [_capitalized(c.sentence()) + "." for c in held_to if c.column == column],
        }
        if values and entry["technique"] not in NO_VALUES and role != "entity_key":
            entry["values"] = _few_values(con, files, column)
            if role == "quasi_identifier" and entry["values"] == [TOP]:
                entry["questions"] = WHOLE
        columns.append(entry)
    return {
        "description": policy.description if policy else "",
        "partitions": len(files),
        "periods": [f.parent.name.removeprefix("period=") for f in files],
        "person_record": policy.unit.record if policy else "",
        "columns": columns,
        "questions": [],
    }


def answers(runs: list[dict], dataset: str) -> list[Answer]:
    """A dataset's declared questions as the latest run that published it scored them."""
    for run in reversed(runs):
        scored = (run.get("datasets", {}).get(dataset) or {}).get("questions")
        if isinstance(scored, dict) and scored:
            return [
                Answer(
                    question=q, ask=s["ask"], answered=bool(s["answered"]), score=Score(**s).line(), run_id=run.get("run_id", "")
                )
                for q, s in scored.items()
            ]
    return []


def _capitalized(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def _few_values(con: duckdb.DuckDBPyConnection, files: list[Path], column: str) -> list[str] | None:
    """The column's distinct values across the files, sorted, if there are at most FEW."""
    paths = [f.as_posix() for f in files]
    found = con.execute(
        f'SELECT DISTINCT CAST("{column}" AS VARCHAR) FROM read_parquet(?, union_by_name = true) LIMIT {FEW + 1}', [paths]
    ).fetchall()
    values = sorted(v for (v,) in found if v is not None)
    return values if len(found) <= FEW else None


def comment(column: Column) -> str:
    """A column's entry in one line: what a DuckDB view carries as the column's comment."""
    levels = "; ".join(f"level {lv['level']}: {lv['meaning']} ({lv['partitions']} partition(s))" for lv in column["levels"])
    parts = [column["meaning"], column["technique"] and f"{column['technique']}", levels, column["type"]]
    return " | ".join(p for p in parts if p)


def write(dictionary: Dictionary, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o750)  # the analysts' group reads it, as it reads the warehouse
    data = out / "dictionary.json"
    data.write_text(json.dumps(dictionary, ensure_ascii=False, indent=1), "utf-8")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined)
    page = out / "dictionary.html"
    page.write_text(env.get_template("dictionary.html.j2").render(dictionary=dictionary), "utf-8")
    for written in (data, page):
        written.chmod(0o640)
    return page, data
