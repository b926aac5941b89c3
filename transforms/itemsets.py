"""k^m within relational classes ((k, k^m)-anonymity, Poulis et al. 2013; Terrovitis et al. 2008):
the part of the privacy engine that looks at a person's items together.

A person-level record is a relational class (the person's own attributes) and a set of items (a
purchase's store, product and amount band …, as published). The record is (k, k^m)-anonymous when
every itemset of at most m items a person holds is held by at least k people of the same class.
At m = 1 that is what the search's classes already ensure (a row's class is its person's class and
its item); this adds m = 2 … M.

Supports are counted level by level, as Apriori does: an itemset of m items is formed only from a
person's itemsets of m - 1 items that at least k people hold, so nothing is enumerated beyond what
can still be shared. Where an itemset is held by fewer than k people, each of them loses one item
of it, the one fewest people of their class hold (local suppression: the rows of that item, not
the person); where a row class is held by fewer than k people, the class goes whole. Each loss
lowers other supports, so the counting repeats until nothing is too rare (each round only
removes, so it ends). Everything runs in DuckDB on a relation of
combinations (i, cls, item, e, w): index, class key, item key, entity id (NULL: a row of its own,
a person with one item), rows.
"""

from __future__ import annotations

import duckdb
import numpy as np

from transforms.criteria import people_sql

_TABLES = ("km", "km_pi", "km_s1", "km_s", "km_drop")


def suppress(
    con: duckdb.DuckDBPyConnection, relation: str, size: int, k: int, m: int, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """What to suppress so that every row class holds k people and every itemset of at most m
    items k people of its class: the combinations whose row class is too rare (a mask over
    0 … size-1; pass 2 removes such a class whole), the items taken from people ((entity id,
    item key) pairs, an array of shape (n, 2)), and the rows all of that holds. Rows only ever
    join the suppressed, so once more than `limit` are, the node has failed: the counting stops
    there and the figures returned are a lower bound (rows > limit is all a caller may read)."""
    k = int(k)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE km AS
                    SELECT i, cls, item, e, w, false AS dead, false AS rare FROM {relation}""")

    def over_limit() -> bool:
        return limit is not None and con.execute("SELECT coalesce(sum(w), 0) FROM km WHERE dead").fetchall()[0][0] > limit

    def past_limit_with_drops() -> bool:
        """The rows already dead and those the items taken so far would remove, past the limit?"""
        return (
            limit is not None
            and con.execute("""
            SELECT coalesce(sum(km.w), 0) FROM km LEFT JOIN (SELECT DISTINCT e, cls, item FROM km_drop) d
            ON km.e = d.e AND km.cls = d.cls AND km.item = d.item WHERE km.dead OR d.e IS NOT NULL""").fetchall()[0][0]
            > limit
        )

    while True:
        # m = 1: a row class (class and item) of fewer than k people goes whole.
        changed = con.execute(f"""
            UPDATE km SET dead = true, rare = true FROM (
                SELECT cls, item FROM km WHERE NOT dead GROUP BY cls, item
                HAVING {people_sql("e", "w")} < {k}) rare
            WHERE NOT km.dead AND km.cls = rare.cls AND km.item = rare.item""").fetchall()[0][0]
        if changed:
            if over_limit():
                break
            continue
        con.execute("CREATE OR REPLACE TEMP TABLE km_pi AS SELECT DISTINCT e, cls, item FROM km WHERE NOT dead AND e IS NOT NULL")
        con.execute("CREATE OR REPLACE TEMP TABLE km_s1 AS SELECT cls, item, count(*) AS sup FROM km_pi GROUP BY ALL")
        con.execute("CREATE OR REPLACE TEMP TABLE km_c1 AS SELECT e, cls, item AS i1, item AS last FROM km_pi")
        con.execute("CREATE OR REPLACE TEMP TABLE km_drop (e BIGINT, cls BIGINT, item BIGINT)")
        names = ["i1"]
        for level in range(2, m + 1):
            new = f"i{level}"
            con.execute(f"""CREATE OR REPLACE TEMP TABLE km_c{level} AS
                SELECT a.e, a.cls, {", ".join("a." + n for n in names)}, b.item AS {new}, b.item AS last
                FROM km_c{level - 1} a JOIN km_pi b ON a.e = b.e AND a.cls = b.cls AND b.item > a.last""")
            con.execute(f"DROP TABLE km_c{level - 1}")
            names.append(new)
            key = ", ".join(names)
            con.execute(f"CREATE OR REPLACE TEMP TABLE km_s AS SELECT cls, {key}, count(*) AS sup FROM km_c{level} GROUP BY ALL")
            # Each holder of a too-rare itemset loses its item fewest people of the class hold (ties:
            # the smaller item key); one join of the single-item supports per position, no window.
            joins = " ".join(f"JOIN km_s1 s{j} ON s{j}.cls = c.cls AND s{j}.item = c.{n}" for j, n in enumerate(names))
            rarest = ", ".join(f"struct_pack(s := s{j}.sup, i := c.{n})" for j, n in enumerate(names))
            con.execute(f"""INSERT INTO km_drop
                SELECT c.e, c.cls, least({rarest}).i FROM km_c{level} c JOIN km_s USING (cls, {key}) {joins}
                WHERE km_s.sup < {k}""")
            if level < m and past_limit_with_drops():  # the larger itemsets are the dearest part: skip them
                break
            # Only what k people share is extended: nothing else can be shared by more.
            con.execute(f"""CREATE OR REPLACE TEMP TABLE km_c{level} AS
                SELECT c.* FROM km_c{level} c JOIN km_s USING (cls, {key}) WHERE sup >= {k}""")
        con.execute(f"DROP TABLE IF EXISTS km_c{len(names)}")
        dropped = con.execute("""UPDATE km SET dead = true FROM (SELECT DISTINCT e, cls, item FROM km_drop) d
                                 WHERE NOT km.dead AND km.e = d.e AND km.cls = d.cls AND km.item = d.item""").fetchall()[0][0]
        if not dropped or over_limit():
            break
    rows = int(con.execute("SELECT coalesce(sum(w), 0) FROM km WHERE dead").fetchall()[0][0])
    classes = np.asarray(con.execute("SELECT i FROM km WHERE rare").fetchnumpy()["i"], np.int64)
    found = con.execute("SELECT DISTINCT e, item FROM km WHERE dead AND NOT rare AND e IS NOT NULL").fetchnumpy()
    for table in _TABLES:
        con.execute(f"DROP TABLE IF EXISTS {table}")
    mask = np.zeros(size, bool)
    mask[classes] = True
    return mask, np.stack([np.asarray(found["e"], np.int64), np.asarray(found["item"], np.int64)], axis=1), rows
