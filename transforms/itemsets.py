"""k^m within relational classes ((k, k^m)-anonymity, Poulis et al. 2013; Terrovitis et al. 2008):
the part of the privacy engine that looks at a person's items together.

A person-level record is a relational class (the person's own attributes, and the unit) and a bag
of items (a purchase's store, product and amount band …, as published, once per row). The record
is (k, k^m)-anonymous when every itemset of at most m items a person holds is held by at least k
people of the same class. At m = 1 that is what the search's classes already ensure (a row's
class is its person's class and its item); this adds m = 2 … M. An item in n rows of a person is
n items, its first … n-th occurrence (at most m of them count: no itemset of m holds more), so
that "bought it twice" is an itemset like any other, and an itemset holds an occurrence only
with the ones before it (what one may know of a person who bought it twice). Taking an
occurrence takes the rows from it on: a person may keep one purchase of an item and lose the
second, which the rows published alike make indistinguishable.

Supports are counted level by level, as Apriori does: an itemset of m items is formed only from a
person's itemsets of m - 1 items that at least k people hold, so nothing is enumerated beyond what
can still be shared. Where an itemset is held by fewer than k people, each of them loses one item
of it, the one fewest people of their class hold (local suppression: the rows of that item, not
the person); where a row class is held by fewer than k people, the class goes whole. Each loss
lowers other supports, so the counting repeats until nothing is too rare (each round only
removes, so it ends).

Rounds after the first count only what the round before can have changed. A support changes
only where an item died, so a round looks at the (class, item) pairs whose rows died in the round
before (and in its own row-class step): their holders, and the itemsets that contain one of them.
Every other itemset was held by k people when last counted and still is (had it been too rare,
its holders would have lost one of its items, and it would contain an item that died). The
decisions are those of counting everything every round (a test compares the two), at the cost of
the first round and what the removals touch.

Memory is bounded by construction, never by a DuckDB limit hit mid-count: the (person, itemset)
pairs of a level, the part that grows fastest with a unit (25 M pairs of 3 items in a day of 2 M
POS lines), are formed from each person's sorted items as increasing positions (no join of rows:
a quarter of the time), and where a level has more of them than BUDGET, once per hash range of the
itemsets' class and first item, each pass forming only its own pairs (a test compares it with one
pass). What is stored is at most the combinations, one range's pairs and supports, and the
itemsets k people share (a prefix to extend).

Everything runs in DuckDB on a relation of combinations (i, cls, item, e, w): index, class key,
item key, entity id (NULL: a row of its own, a person with one item), rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import duckdb
import numpy as np

from transforms.criteria import people_sql

_TABLES = ("km", "km_ix", "km_a", "km_p", "km_pi", "km_l", "km_s1", "km_s", "km_c", "km_drop", "km_seen", "km_new")
BUDGET = 4_000_000  # a level's (person, itemset) pairs counted in one pass; more are counted a hash range at a time
SAMPLED = 16  # the share of a level's pairs (one hash range in SAMPLED) that estimates their number


def suppress(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    size: int,
    k: int,
    m: int,
    limit: int | None = None,
    *,
    recount_all: bool = False,
    budget: int = BUDGET,
) -> tuple[np.ndarray, np.ndarray, int]:
    """What to suppress so that every row class holds k people and every itemset of at most m
    items k people of its class: the combinations whose row class is too rare (a mask over
    0 … size-1; pass 2 removes such a class whole), the items taken from people ((entity id,
    item key, rows of it kept) triples, an array of shape (n, 3); pass 2 keeps that many of the
    person's rows of the item), and the rows all of that holds. Rows only ever
    join the suppressed, so once more than `limit` are, the node has failed: the counting stops
    there and the figures returned are a lower bound (rows > limit is all a caller may read).
    `recount_all` counts every itemset in every round (the tests' reference); `budget` is the
    number of a level's itemsets one pass of the count holds (BUDGET)."""
    k, m = int(k), int(m)
    run = con.execute
    # An item in n rows of a person is n items, its occurrences 0 … min(n, m) - 1 (no itemset of
    # m holds more), keyed item·m + occurrence: each item's rank among the items (km_ix maps it
    # back) leaves room for them. A row of km is one occurrence of one person's item; the last
    # counted occurrence stands for the rows past it too (w), so that taking occurrence j removes
    # the rows from the j-th on. Rows without a person are people of their own: one occurrence.
    run(f"""CREATE OR REPLACE TEMP TABLE km_ix AS SELECT item, (row_number() OVER (ORDER BY item) - 1)::BIGINT AS ix
            FROM (SELECT DISTINCT item FROM {relation})""")
    ranked = f"(SELECT r.* EXCLUDE (item), x.ix AS item FROM {relation} r JOIN km_ix x USING (item))"
    # `gone` is the round in which a row died (NULL while it is alive); the first round's row
    # classes of fewer than k people are marked as the table is made (one join of their sizes).
    run(f"""CREATE OR REPLACE TEMP TABLE km AS
            WITH t AS (SELECT e, cls, item, sum(w)::BIGINT AS n, least(n, CASE WHEN e IS NULL THEN 1 ELSE {m} END) AS c
                       FROM {ranked} GROUP BY e, cls, item),
            size AS (SELECT cls, item, {people_sql("e", "n")} AS n FROM t GROUP BY cls, item),
            o AS (SELECT *, unnest(range(c)) AS j FROM t)
            SELECT o.cls, o.item * {m} + o.j AS item, o.e, CASE WHEN o.j = o.c - 1 THEN o.n - o.j ELSE 1 END AS w,
            CASE WHEN size.n < {k} THEN 1 END::INTEGER AS gone, size.n < {k} AS rare FROM o JOIN size USING (cls, item)""")

    def dead() -> int:
        return int(run("SELECT coalesce(sum(w), 0) FROM km WHERE gone IS NOT NULL").fetchall()[0][0])

    def over_limit() -> bool:
        return limit is not None and dead() > limit

    round_ = 0
    failed = None  # past the limit while counting: the rows the items taken so far would remove
    while True:
        round_ += 1
        whole = round_ == 1 or recount_all
        # m = 1: a row class (class and item: its first occurrences) of fewer than k people goes
        # whole (the first round's were marked as km was made). Its count in people changes only
        # where its own rows died, in the round before.
        if round_ > 1:
            died = f"SELECT DISTINCT cls, item - item % {m} AS item FROM km WHERE gone = {round_ - 1}"  # as first occurrences
            scope = "km" if whole else f"km SEMI JOIN ({died}) USING (cls, item)"
            run(f"""
                UPDATE km SET gone = {round_}, rare = true FROM (
                    SELECT cls, item FROM {scope} WHERE gone IS NULL AND item % {m} = 0 GROUP BY cls, item
                    HAVING {people_sql("e", "w")} < {k}) rare
                WHERE km.gone IS NULL AND km.cls = rare.cls AND km.item - km.item % {m} = rare.item""")
        if over_limit():
            break
        if whole:
            run("""CREATE OR REPLACE TEMP TABLE km_pi AS
                   SELECT e, cls, item, true AS a FROM km WHERE gone IS NULL AND e IS NOT NULL""")
            run("CREATE OR REPLACE TEMP TABLE km_s1 AS SELECT cls, item, count(*) AS sup FROM km_pi GROUP BY ALL")
        else:
            # The items whose rows died since the last count, their holders, and what they hold.
            run(f"CREATE OR REPLACE TEMP TABLE km_a AS SELECT DISTINCT cls, item FROM km WHERE gone >= {round_ - 1}")
            run("""CREATE OR REPLACE TEMP TABLE km_p AS SELECT DISTINCT km.e, km.cls FROM km JOIN km_a USING (cls, item)
                   WHERE km.gone IS NULL AND km.e IS NOT NULL""")
            run("""CREATE OR REPLACE TEMP TABLE km_pi AS
                   SELECT km.e, km.cls, km.item, km_a.cls IS NOT NULL AS a FROM km SEMI JOIN km_p USING (e, cls)
                   LEFT JOIN km_a USING (cls, item) WHERE km.gone IS NULL""")
            # Single supports, kept rather than recounted: less the people whose item died since
            # (the items taken in the round before, the row classes gone in this one).
            run(f"""UPDATE km_s1 SET sup = km_s1.sup - d.n FROM (
                    SELECT cls, item, count(DISTINCT e) AS n FROM km WHERE e IS NOT NULL
                    AND ((gone = {round_ - 1} AND NOT rare) OR (gone = {round_} AND rare)) GROUP BY ALL) d
                    WHERE km_s1.cls = d.cls AND km_s1.item = d.item""")
        # Each person's items in increasing order (and which of them the count is for): the
        # itemsets of a level are formed from positions in these lists, never by joining rows.
        # (A whole round counts every itemset: it reads no flags, and a second ordered list would
        # cost the list's making three times over.)
        flags = "NULL::BOOLEAN[]" if whole else "list(a ORDER BY item)"
        run(f"""CREATE OR REPLACE TEMP TABLE km_l AS SELECT e, cls, list(item ORDER BY item) AS l,
               {flags} AS al, count(*)::DOUBLE AS n FROM km_pi GROUP BY e, cls HAVING count(*) > 1""")
        run("CREATE OR REPLACE TEMP TABLE km_drop (e BIGINT, cls BIGINT, item BIGINT)")
        watch = _Watch(run, dead(), limit, m) if limit is not None else None
        for level in range(2, m + 1):
            if not _count_level(run, level, m, k, whole, budget, watch if (level < m or whole) else None):
                failed = watch.rows if watch is not None else None
                break
            # The larger itemsets are the dearest part, and taking the items the dearest write
            # (a failing node's first round takes a million): neither is done for a failed node,
            # and a level stops at the range that shows it (_Watch). (Past the first round few
            # items are taken, and taking them shows it as well.)
        for level in range(2, m + 1):
            run(f"DROP TABLE IF EXISTS km_f{level}")
        if failed is not None:
            break
        # An occurrence taken goes with the ones after it (the rows past it).
        dropped = run(f"""UPDATE km SET gone = {round_} FROM (
                          SELECT e, cls, min(item) AS item FROM km_drop GROUP BY e, cls, item - item % {m}) d
                          WHERE km.gone IS NULL AND km.e = d.e AND km.cls = d.cls
                          AND km.item >= d.item AND km.item < d.item - d.item % {m} + {m}""").fetchall()[0][0]
        if not dropped or over_limit():
            break
    rows = failed if failed is not None else dead()
    classes = con.execute(f"""SELECT r.i FROM {ranked} r SEMI JOIN (
                              SELECT DISTINCT cls, item // {m} AS item FROM km WHERE rare) USING (cls, item)""").fetchnumpy()
    found = con.execute(f"""SELECT t.e, x.item, t.kept FROM (
                            SELECT e, item // {m} AS ix, min(item % {m}) AS kept FROM km
                            WHERE gone IS NOT NULL AND NOT rare AND e IS NOT NULL GROUP BY ALL) t
                            JOIN km_ix x USING (ix)""").fetchnumpy()
    for table in _TABLES:
        run(f"DROP TABLE IF EXISTS {table}")
    mask = np.zeros(size, bool)
    mask[np.asarray(classes["i"], np.int64)] = True
    taken = np.stack([np.asarray(found[c], np.int64) for c in ("e", "item", "kept")], axis=1).reshape(-1, 3)
    return mask, taken, rows


class _Watch:
    """The rows a round has removed so far (dead before it, and those of the items taken since),
    kept up to date range by range, so that a count stops within a level once its node has failed:
    the items a range takes are taken whatever the other ranges find, so a level's rows only grow
    from what one range shows. Each check reads the items newly taken, and the rows only where
    they join them."""

    def __init__(self, run, dead: int, limit: int, m: int):
        self.run, self.rows, self.limit, self.m = run, dead, limit, m
        self.read = 0  # rows of km_drop (appended to only) read so far
        # Per person and item, the first occurrence taken so far (the rows from it on are counted).
        run("CREATE OR REPLACE TEMP TABLE km_seen (e BIGINT, cls BIGINT, b BIGINT, j BIGINT)")

    def over(self) -> bool:
        run, m = self.run, self.m
        # An occurrence newly taken adds the rows from it up to the first one taken before.
        run(f"""CREATE OR REPLACE TEMP TABLE km_new AS SELECT n.e, n.cls, n.b, n.j, coalesce(s.j, {m}) AS upto FROM (
                SELECT e, cls, item // {m} AS b, min(item % {m}) AS j FROM km_drop WHERE rowid >= {self.read} GROUP BY ALL) n
                LEFT JOIN (SELECT e, cls, b, min(j) AS j FROM km_seen GROUP BY ALL) s USING (e, cls, b)
                WHERE s.j IS NULL OR n.j < s.j""")
        self.read = run("SELECT count(*) FROM km_drop").fetchall()[0][0]
        added = run(f"""SELECT coalesce(sum(km.w), 0) FROM km JOIN km_new n ON km.e = n.e AND km.cls = n.cls
                        AND km.item >= n.b * {m} + n.j AND km.item < n.b * {m} + n.upto WHERE km.gone IS NULL""").fetchall()[0][0]
        run("INSERT INTO km_seen SELECT e, cls, b, j FROM km_new")
        self.rows += int(added)
        return self.rows > self.limit


def _count_level(run, level: int, m: int, k: int, whole: bool, budget: int, watch: _Watch | None = None) -> bool:
    """One level of a round: the supports of the itemsets of `level` items, the holders of those
    too rare losing one item each (into km_drop), and, below m, the itemsets that may be extended
    (km_f<level>). The (person, itemset) pairs are formed from each person's sorted items (km_l)
    as increasing positions, a prefix kept only where it may be extended. Where there are more of
    them than `budget`, they are formed and counted once per hash range of the itemsets' class and
    first item (an itemset falls in one range, and a pass forms only its own pairs), so a pass
    holds about `budget` pairs whatever the unit's size (more if one class and item start most
    of them). With a `watch`, False as soon as the rows removed so far are past its limit (the
    node has failed; checked after each range and at the end)."""
    names = [f"i{j}" for j in range(1, level + 1)]
    key = ", ".join(names)

    def pairs(ranges: int, part: int) -> str:
        """The pairs of one hash range in `ranges` (SQL: e, cls, i1 … i<level>). An itemset holds an
        item's n-th occurrence only with its (n-1)-th, right before it in a person's sorted list
        (an intruder who knows one purchase of an item knows its first)."""
        q = f"SELECT e, cls, l, al, unnest(generate_series(1, len(l) - {level - 1})) AS x1 FROM km_l WHERE len(l) >= {level}"
        q = f"SELECT * FROM ({q}) WHERE l[x1] % {m} = 0" + (f" AND hash(cls, l[x1]) % {ranges} = {part}" if ranges > 1 else "")
        for j in range(2, level + 1):
            if j == level and level > 2:
                # A prefix is extended where its support was counted and holds k people, or where
                # it holds no item that died since (not counted this round: it held k when last counted).
                on = " AND ".join(["f.cls = q.cls"] + [f"f.i{t} = q.l[q.x{t}]" for t in range(1, level)])
                if whole:
                    q = f"SELECT q.* FROM ({q}) q SEMI JOIN km_f{level - 1} f ON {on}"
                else:
                    held = " OR ".join(f"q.al[q.x{t}]" for t in range(1, level))
                    q = f"SELECT q.* FROM ({q}) q LEFT JOIN km_f{level - 1} f ON {on} WHERE f.cls IS NOT NULL OR NOT ({held})"
            q = f"SELECT *, unnest(generate_series(x{j - 1} + 1, len(l) - {level - j})) AS x{j} FROM ({q})"
            q = f"SELECT * FROM ({q}) WHERE l[x{j}] % {m} = 0 OR x{j} = x{j - 1} + 1"
        counted = " OR ".join(f"al[x{t}]" for t in range(1, level + 1))
        itemset = ", ".join(f"l[x{t}] AS i{t}" for t in range(1, level + 1))
        return f"SELECT e, cls, {itemset} FROM ({q}) WHERE {'true' if whole else counted}"

    ranges = hash_ranges(run, "km_l", level, pairs, budget)
    if level < m:
        run(f"CREATE OR REPLACE TEMP TABLE km_f{level} (cls BIGINT, {', '.join(n + ' BIGINT' for n in names)})")
    # Each holder of a too-rare itemset loses its item fewest people of the class hold (ties: the
    # smaller item key); one join of the single-item supports per position, no window.
    single = " ".join(f"JOIN km_s1 s{j} ON s{j}.cls = c.cls AND s{j}.item = c.{n}" for j, n in enumerate(names))
    rarest = ", ".join(f"struct_pack(s := s{j}.sup, i := c.{n})" for j, n in enumerate(names))
    for part in range(ranges):
        # One range's pairs are formed once and kept for its two reads (support, then the holders
        # of what is too rare): forming them is most of a count, and a range holds `budget` at most.
        run(f"CREATE OR REPLACE TEMP TABLE km_c AS {pairs(ranges, part)}")
        run(f"CREATE OR REPLACE TEMP TABLE km_s AS SELECT cls, {key}, count(*) AS sup FROM km_c GROUP BY ALL")
        if run(f"SELECT count(*) FROM km_s WHERE sup < {k}").fetchall()[0][0]:
            run(f"""INSERT INTO km_drop SELECT DISTINCT c.e, c.cls, least({rarest}).i
                FROM km_c c JOIN km_s USING (cls, {key}) {single} WHERE km_s.sup < {k}""")
        if level < m:
            run(f"INSERT INTO km_f{level} SELECT cls, {key} FROM km_s WHERE sup >= {k}")
        if watch is not None and watch.over():
            run("DROP TABLE IF EXISTS km_c")
            return False
    run("DROP TABLE IF EXISTS km_c")
    return True


def hash_ranges(run, counts: str, level: int, pairs: Callable[[int, int], str], budget: int) -> int:
    """How many hash ranges a level's (person, itemset) pairs are counted in, about `budget` pairs
    each (`pairs(ranges, part)`: SQL of the pairs in one hash range of the itemsets' class and
    first item). A person with n items (`counts`: a table with column n) has at most n choose
    `level`; past the budget, the pairs are counted in one hash range of SAMPLED (a sixteenth of
    the work of forming them all) and the total estimated from it, with a quarter more for what
    the sample may have missed (ranges too many cost time, too few memory)."""
    choose = " * ".join(f"(n - {j})" for j in range(level)) + f" / {math.factorial(level)}"
    bound = run(f"SELECT coalesce(sum({choose}), 0) FROM {counts}").fetchall()[0][0]
    if bound > budget:
        sampled = run(f"SELECT count(*) FROM ({pairs(SAMPLED, 0)})").fetchall()[0][0]
        bound = min(bound, sampled * SAMPLED * 5 // 4)
    return max(1, -(-int(bound) // budget))
