"""The privacy engine's table of combinations out of core, in DuckDB: what lets one closing run
search over all of history's combinations without holding them in memory.

The tallies of pass 1 (Parquet files in the restricted work area, or Arrow tables) are read once
into one table of distinct combinations: per quasi-identifier the lowest-level code (a join on
its codebook), the entity id, the sensitive values and the rows they stand for. A lattice node
is then one query: every code mapped to the node's level by a join on a small map, classes by
GROUP BY, the combinations of the failing classes kept in a temporary table. DuckDB holds at
most MEMORY_LIMIT and spills the rest beside its database, so the engine's memory does not grow
with the input. It answers as the in-memory table does (combinations.InMemory, the tests' oracle).

A query costs tens of milliseconds however small the table, and the exact search may visit
hundreds of nodes: a table of at most IN_MEMORY combinations is searched in memory instead
(`loaded`), where that costs bounded memory and far less time.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms import scratch
from transforms.combinations import Combinations, InMemory, drawn, identity
from transforms.criteria import PEOPLE, SQL_OF_COUNTS, PrivacyModel, Statistic, people_sql
from transforms.hierarchy import Encoded

MEMORY_LIMIT = "256MB"  # DuckDB's own memory; what does not fit is spilled to disk
IN_MEMORY = 1_000_000  # combinations up to which the search runs in memory (~200 MiB at most)
GROUP_COMBOS = 1_000_000  # combinations whose itemsets one count holds at once (units are never split)
SAMPLE_COMBOS = 1_000_000  # a table of several times more, in SAMPLE_UNITS units or more, chooses its node on a sample
SAMPLE_UNITS = 20
ONE_KEY_BELOW = 2**62  # class keys as one integer while the key space is smaller


def _name(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def connect(where: Path | None) -> duckdb.DuckDBPyConnection:
    """DuckDB in memory (where=None, for small inputs), or on disk in `where` held to MEMORY_LIMIT."""
    if where is None:
        return duckdb.connect()
    where.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(
        str(where / "duckdb"),
        config={"memory_limit": MEMORY_LIMIT, "temp_directory": str(where / "spill"), "preserve_insertion_order": False},
    )


def run(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    """A statement run to its end (DuckDB keeps a connection busy until a result is consumed)."""
    return con.execute(sql).fetchall()


def copy(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    """An Arrow table copied into DuckDB: joins on a registered (Python-held) table are not held
    to the memory limit."""
    con.register("arrow", table)
    run(con, f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM arrow")
    con.unregister("arrow")


def source(con: duckdb.DuckDBPyConnection, parts: list[Path | pa.Table]) -> str:
    """Tallies as one relation (SQL): Parquet files read directly, Arrow tables copied in
    (dictionary columns decoded: they are small when held in memory)."""
    files = [str(p) for p in parts if isinstance(p, Path)]
    selects = []
    if files:
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        selects.append(f"SELECT * FROM read_parquet([{listed}], union_by_name = true)")
    for index, part in enumerate(p for p in parts if not isinstance(p, Path)):
        copy(
            con,
            f"part{index}",
            pa.table(
                {
                    name: pc.dictionary_decode(column) if pa.types.is_dictionary(column.type) else column
                    for name, column in zip(part.column_names, part.columns)
                }
            ),
        )
        selects.append(f"SELECT * FROM part{index}")
    return "(" + " UNION ALL BY NAME ".join(selects) + ")"


def class_table(
    parts: list[Path | pa.Table],
    qis: list[str],
    entity: str | None,
    sensitive: list[str],
    rows: str,
    people: str,
    where: Path | None = None,
) -> pa.Table:
    """The published rows' classes from their tallies (`parts`: distinct QI values, entity id,
    sensitive values, with `rows`; the same combination may recur across parts): one row per
    distinct (QI values, sensitive values) with its rows, and on one row of each class the
    class's size, `people` (distinct entities, a row without one counting as a person of its
    own; rows when there is no entity), 0 on its other rows, so that a sum per class is its size.
    What k, l and the risk figures need, with one row per class and sensitive value instead of
    one per class and person."""
    con = connect(where)
    try:
        relation = source(con, parts)
        q = [_name(c) for c in qis]
        s = [_name(c) for c in sensitive]
        size = people_sql(_name(entity), _name(rows)) if entity else f"sum({_name(rows)})"
        same = " AND ".join(f"cells.{c} IS NOT DISTINCT FROM sizes.{c}" for c in q) or "true"
        first = f"row_number() OVER (PARTITION BY {', '.join(f'cells.{c}' for c in q) or '1'}) = 1"
        return con.sql(f"""
            WITH sizes AS (SELECT {", ".join(q + [f"{size} AS size"])} FROM {relation} GROUP BY ALL),
                 cells AS (SELECT {", ".join(q + s + [f"sum({_name(rows)}) AS {_name(rows)}"])} FROM {relation} GROUP BY ALL)
            SELECT {", ".join(f"cells.{c}" for c in q + s)}, cells.{_name(rows)}::BIGINT AS {_name(rows)},
                   (CASE WHEN {first} THEN sizes.size ELSE 0 END)::BIGINT AS {_name(people)}
            FROM cells JOIN sizes ON {same}""").to_arrow_table()
    finally:
        con.close()
        if where is not None:
            shutil.rmtree(where, ignore_errors=True)


class OutOfCore(Combinations):
    """The combinations of `parts` (tallies: Parquet paths or Arrow tables with one column per
    quasi-identifier in `columns`, the entity id, the subject flag and the rows), without the
    rows of subjects and of the `erased` entity ids, and of the `left_out` values of one column
    (units never published: past their retention). `grouped`: the first quasi-identifier is the
    unit (one level, part of every class, never an item), and itemsets are counted a group of
    units at a time. `where` is the directory for DuckDB's database and spill files (None: in
    memory, for small inputs); close() removes it."""

    def __init__(
        self,
        parts: list[Path | pa.Table],
        qis: list[Encoded],
        columns: list[str],
        codebooks: list[pa.Array],
        bounds: list[tuple[int, int]],
        *,
        entity: str,
        by_entity: bool,
        subject: str,
        rows: str,
        model: PrivacyModel,
        erased: pa.Array | None = None,
        where: Path | None = None,
        left_out: tuple[str, list[str]] | None = None,
        grouped: bool = False,
    ):
        self.where = where
        self.grouped = grouped
        if grouped and bounds[0] != (0, 0):
            raise ValueError("a grouped table's first quasi-identifier is its unit, which has one level")
        self.con = connect(where)
        self.qis, self.bounds = qis, bounds
        self.tops = [q.sizes[0] for q in qis]
        self.by_entity = by_entity
        self.model = model
        relation = source(self.con, parts)
        copy(self.con, "erased", pa.table({"id": erased if erased is not None else pa.array([], pa.int64())}))
        selected, joins = [], []
        for j, (column, codebook) in enumerate(zip(columns, codebooks)):
            copy(self.con, f"codebook{j}", pa.table({"label": codebook, "code": np.arange(len(codebook), dtype=np.int32)}))
            selected.append(f"codebook{j}.code AS q{j}")
            joins.append(f"JOIN codebook{j} ON t.{_name(column)} IS NOT DISTINCT FROM codebook{j}.label")
        selected += [f"t.{_name(entity)} AS e"] + [f"t.{_name(c)} AS s{j}" for j, c in enumerate(model.sensitive)]
        kept = f"NOT t.{_name(subject)} AND (t.{_name(entity)} IS NULL OR t.{_name(entity)} NOT IN (SELECT id FROM erased))"
        if left_out and left_out[1]:
            copy(self.con, "left_out", pa.table({"v": pa.array(left_out[1], pa.string())}))
            relation = f"(SELECT * FROM {relation} WHERE {_name(left_out[0])} NOT IN (SELECT v FROM left_out))"
        run(
            self.con,
            f"""
            CREATE TABLE combo AS
                SELECT {", ".join(selected)}, sum(t.{_name(rows)})::BIGINT AS w
                FROM {relation} t {" ".join(joins)} WHERE {kept} GROUP BY ALL""",
        )
        self.erased_rows = int(
            run(self.con, f"SELECT coalesce(sum(t.{_name(rows)}), 0) FROM {relation} t WHERE NOT ({kept})")[0][0]
        )
        self.size, self.rows = (int(x) for x in run(self.con, "SELECT count(*), coalesce(sum(w), 0) FROM combo")[0])
        # A node maps codes to its levels through these small tables (none for a level that
        # maps codes to themselves).
        self.maps: list[dict[int, str | None]] = []
        for j, (q, (lo, hi)) in enumerate(zip(qis, bounds)):
            self.maps.append({})
            for level in range(lo, hi + 1):
                mapping = q.maps[level]
                if identity(mapping):
                    self.maps[j][level] = None
                else:
                    self.maps[j][level] = f"map{j}_{level}"
                    copy(
                        self.con,
                        f"map{j}_{level}",
                        pa.table({"code": np.arange(len(mapping), dtype=np.int32), "v": mapping.astype(np.int32)}),
                    )

    def close(self) -> None:
        self.con.close()
        if self.where is not None:
            shutil.rmtree(self.where, ignore_errors=True)

    def __enter__(self) -> OutOfCore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def loaded(self) -> Combinations:
        """This table, or when it is small, the same combinations in memory (and this one closed)."""
        if self.size > IN_MEMORY:
            return self
        table = self._in_memory("true")
        self.close()
        return table

    def sample(self, combos: int) -> InMemory | None:
        """The combinations of a sample of whole units, about `combos` of them, in memory: where the
        search chooses its node when the table is large (transforms/anonymity.with_itemsets), before
        that node is counted once on everything. Units are drawn by a hash of their code, so the
        same table gives the same sample; None unless the table has units enough to sample."""
        if not self.grouped or self.size <= 2 * combos:
            return None
        counts = self.con.execute("SELECT q0, count(*) AS n FROM combo GROUP BY q0 ORDER BY hash(q0), q0").fetchnumpy()
        if len(counts["q0"]) < SAMPLE_UNITS:
            return None
        taken = np.cumsum(counts["n"]) <= combos
        taken[0] = True
        codes = ", ".join(str(int(c)) for c in counts["q0"][taken])
        return self._in_memory(f"q0 IN ({codes})")

    def people(self, share: float, model: PrivacyModel) -> InMemory:
        """As in memory (combinations.drawn over the tallies' entity ids); a combination without an
        entity by its rowid."""
        unknown = "e IS NULL" if self.by_entity else "true"
        rowids = np.asarray(self.con.execute(f"SELECT rowid AS i FROM combo WHERE {unknown}").fetchnumpy()["i"], np.int64)
        copy(self.con, "drawn_rows", pa.table({"i": rowids[drawn(rowids, share)]}))
        where = "rowid IN (SELECT i FROM drawn_rows)"
        if self.by_entity:
            ids = np.asarray(self.con.execute("SELECT DISTINCT e FROM combo WHERE e IS NOT NULL").fetchnumpy()["e"], np.int64)
            copy(self.con, "drawn", pa.table({"e": ids[drawn(ids, share)]}))
            where = f"(e IN (SELECT e FROM drawn) OR {where})"
        try:
            return self._in_memory(where, model)
        finally:
            run(self.con, "DROP TABLE IF EXISTS drawn")
            run(self.con, "DROP TABLE drawn_rows")

    def _in_memory(self, where: str, model: PrivacyModel | None = None) -> InMemory:
        """The combinations `where` holds (SQL over combo), in memory (judged by `model`, or by this table's)."""
        # Entities and sensitive values as dense codes (-1: no entity; null is a value of its own).
        columns = (
            [f"q{j}" for j in range(len(self.qis))]
            + ["w"]
            + ["CASE WHEN e IS NULL THEN -1 ELSE dense_rank() OVER (ORDER BY e) - 1 END AS e"]
            + [f"dense_rank() OVER (ORDER BY s{j}) - 1 AS s{j}" for j in range(len(self.model.sensitive))]
        )
        found = self.con.execute(f"SELECT {', '.join(columns)} FROM combo WHERE {where}").fetchnumpy()
        ids = (
            self.con.execute(f"SELECT DISTINCT e FROM combo WHERE e IS NOT NULL AND {where} ORDER BY e").fetchnumpy()["e"]
            if self.by_entity
            else None
        )
        qis = [dataclasses.replace(q, codes=np.asarray(found[f"q{j}"])) for j, q in enumerate(self.qis)]
        sensitive = {c: np.asarray(found[f"s{j}"]) for j, c in enumerate(self.model.sensitive)}
        entity = np.asarray(found["e"]) if self.by_entity else None
        table = InMemory(qis, entity, sensitive, np.asarray(found["w"]), self.bounds, model or self.model)
        table.entity_ids = np.asarray(ids, np.int64) if ids is not None else None
        return table

    def rows_per_code(self, among: np.ndarray | None = None) -> list[np.ndarray]:
        chosen = self._among(among)
        out = []
        for j, top in enumerate(self.tops):
            found = self.con.execute(f"SELECT q{j}, sum(w)::DOUBLE AS w FROM {chosen} GROUP BY q{j}").fetchnumpy()
            out.append(np.bincount(found[f"q{j}"], weights=found["w"], minlength=top))
        return out

    def codes(self, among: np.ndarray) -> tuple[list[np.ndarray], int]:
        """The lowest-level codes of the combinations `among`, per quasi-identifier, and their rows."""
        found = self.con.execute(f"SELECT * FROM {self._among(among)}").fetchnumpy()
        return [np.asarray(found[f"q{j}"]) for j in range(len(self.tops))], int(np.sum(found["w"]))

    def _among(self, among: np.ndarray | None) -> str:
        if among is None:
            return "combo"
        copy(self.con, "among", pa.table({"i": np.flatnonzero(among)}))
        return "(SELECT c.* FROM combo c SEMI JOIN among ON c.rowid = among.i)"

    def failing(self, node: tuple[int, ...], allowed: int) -> tuple[int, np.ndarray | None]:
        keys = self._keys(node)
        run(
            self.con,
            f"""
            CREATE OR REPLACE TEMP TABLE failed AS
            WITH {self._classes(node)}
            SELECT g.i, g.w FROM g JOIN classes USING ({keys}) WHERE classes.fails""",
        )
        rows = int(run(self.con, "SELECT coalesce(sum(w), 0) FROM failed")[0][0])
        if rows > allowed:
            return rows, None
        mask = np.zeros(self.size, bool)
        mask[self.con.execute("SELECT i FROM failed").fetchnumpy()["i"]] = True
        return rows, mask

    def published(self, node: tuple[int, ...]) -> np.ndarray:
        found = self.con.execute(f"WITH {self._classes(node)} SELECT size FROM classes WHERE NOT fails").fetchnumpy()
        return np.asarray(found["size"], np.int64)

    def itemsets(self, node: tuple[int, ...], items: list[bool], limit: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        from transforms.itemsets import suppress

        k, m = self.model.k, self.model.m
        mapped, joins = self._mapped(node)
        keys = []
        for part in (False, True):
            chosen = [j for j, flag in enumerate(items) if flag == part]
            radix = int(np.prod([self.qis[j].sizes[node[j]] for j in chosen], dtype=object))
            if radix < ONE_KEY_BELOW:
                terms, base = [], 1
                for j in reversed(chosen):
                    terms.append(f"{mapped[j]}::BIGINT * {base}")
                    base *= int(self.qis[j].sizes[node[j]])
                keys.append(" + ".join(terms) or "0")
            elif not part:  # classes only group here: a 64-bit hash will do (collisions rarer than 1 in 10^9)
                keys.append(f"hash({', '.join(mapped[j] for j in chosen)})::BIGINT")
            else:  # item keys are matched again in pass 2 (plan.finish), which computes them exactly
                raise ValueError(f"the items' key space ({radix} values) does not fit one integer; coarsen an item attribute")
        entity = "c.e" if self.by_entity else "NULL::BIGINT AS e"
        select = f"SELECT c.rowid AS i, ({keys[0]}) AS cls, ({keys[1]}) AS item, {entity}, c.w FROM combo c {' '.join(joins)}"
        if not self.grouped:
            return suppress(self.con, f"({select})", self.size, k, m, limit)
        # Units share no class: each group of them is counted on its own, in a connection of its
        # own that holds that group only, so the count's memory follows the group (a unit at
        # most), never the table; the limit is the whole table's.
        mask, taken, rows = np.zeros(self.size, bool), [np.zeros((0, 3), np.int64)], 0
        for low, high in self._unit_groups():
            combos = self.con.sql(f"{select} WHERE c.q0 BETWEEN {low} AND {high}").to_arrow_table()
            group = scratch.connection()
            try:
                group.register("combos", combos)
                found = suppress(group, "combos", self.size, k, m, None if limit is None else limit - rows)
            finally:
                group.close()
            mask |= found[0]
            taken.append(found[1])
            rows += found[2]
            if limit is not None and rows > limit:
                break
        return mask, np.concatenate(taken), rows

    def _unit_groups(self) -> list[tuple[int, int]]:
        """Ranges of unit codes (the first quasi-identifier) of about GROUP_COMBOS combinations
        each; a unit larger than that is a group of its own (pass 1 refuses a unit too large to
        count: flows/pipeline/passes.UnitTooLarge)."""
        counts = self.con.execute("SELECT q0, count(*) AS n FROM combo GROUP BY q0 ORDER BY q0").fetchnumpy()
        groups: list[tuple[int, int]] = []
        size = GROUP_COMBOS
        for code, n in zip(counts["q0"].tolist(), counts["n"].tolist()):
            if size + n > GROUP_COMBOS and size:
                groups.append((code, code))
                size = 0
            groups[-1] = (groups[-1][0], code)
            size += n
        return groups

    def _mapped(self, node: tuple[int, ...]) -> tuple[list[str], list[str]]:
        """Each quasi-identifier's code at `node` (SQL over combo `c`), and the joins it needs."""
        mapped, joins = [], []
        for j, level in enumerate(node):
            table = self.maps[j][level]
            if table is None:
                mapped.append(f"c.q{j}")
            else:
                joins.append(f"JOIN {table} ON {table}.code = c.q{j}")
                mapped.append(f"{table}.v")
        return mapped, joins

    def _keys(self, node: tuple[int, ...]) -> str:
        """The class key columns at `node`: one integer while the levels' codes fit one (mixed
        radix; grouping and joining on it is about twice as fast), else one per quasi-identifier."""
        radix = int(np.prod([q.sizes[level] for q, level in zip(self.qis, node)], dtype=object))
        return "k" if radix < ONE_KEY_BELOW else ", ".join(f"k{j}" for j in range(len(node)))

    def _classes(self, node: tuple[int, ...]) -> str:
        """CTEs: g, each combination with its class key at `node`; h<j>, the statistics of the
        j-th sensitive column per class, from its rows per (class, value) (criteria.SQL_OF_COUNTS);
        classes, each class's size (entities counted once, a row without one as a person of its
        own) and whether the privacy model fails it."""
        mapped, joins = self._mapped(node)
        key = self._keys(node)
        if key == "k":
            terms, radix = [], 1
            for j in reversed(range(len(node))):
                terms.append(f"{mapped[j]}::BIGINT * {radix}")
                radix *= int(self.qis[j].sizes[node[j]])
            columns = [f"({' + '.join(terms) or '0'}) AS k"]
        else:
            columns = [f"{m} AS k{j}" for j, m in enumerate(mapped)]
        size = people_sql("e", "w") if self.by_entity else "sum(w)"
        stats: dict[Statistic, str] = {PEOPLE: size}
        per_column, with_h = [], []
        for j, column in enumerate(self.model.sensitive):
            wanted = [what for what, on in self.model.needs if on == column]
            if wanted == ["distinct"]:  # values present only: null is a value of its own, as in memory
                stats[("distinct", column)] = f"count(DISTINCT s{j}) + max((s{j} IS NULL)::INT)"
                continue
            aggregates = ", ".join(f"{SQL_OF_COUNTS[what]} AS {what}" for what in wanted)
            per_column.append(f"""h{j} AS (SELECT {key}, {aggregates} FROM (
                SELECT {key}, sum(w) AS c, sum(w) / sum(sum(w)) OVER (PARTITION BY {key}) AS p FROM g GROUP BY {key}, s{j})
                GROUP BY {key})""")
            with_h.append(f"JOIN h{j} USING ({key})")
            stats.update({(what, column): f"any_value(h{j}.{what})" for what in wanted})
        return ", ".join(
            [
                f"g AS MATERIALIZED (SELECT c.rowid AS i, c.*, {', '.join(columns)} FROM combo c {' '.join(joins)})",
                *per_column,
                f"classes AS (SELECT {key}, {size} AS size, ({self.model.sql_fails(stats)}) AS fails "
                f"FROM g {' '.join(with_h)} GROUP BY {key})",
            ]
        )


def rows_in(table: pa.Table, classes: pa.Table) -> np.ndarray:
    """Which rows of `table` have the values of one of `classes`' rows in its columns (a null
    matching a null), as a mask; DuckDB compares the two sides' types (dates, timestamps of any
    unit, decimals) as SQL does."""
    names = classes.column_names
    con = scratch.connection()
    try:
        con.register("rows", pa.table([*(table[c] for c in names), pa.array(np.arange(table.num_rows))], names=[*names, "__row"]))
        con.register("classes", classes)
        on = " AND ".join(f"rows.{_name(c)} IS NOT DISTINCT FROM classes.{_name(c)}" for c in names) or "true"
        found = con.sql(f"SELECT DISTINCT rows.__row FROM rows JOIN classes ON {on}").to_arrow_table()["__row"]
    finally:
        con.close()
    mask = np.zeros(table.num_rows, bool)
    mask[found.to_numpy()] = True
    return mask
