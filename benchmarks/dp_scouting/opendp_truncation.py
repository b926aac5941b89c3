"""Issue 22, found while testing the DP tables: what OpenDP 0.16.0's truncations keep. One person
in five cells, one row each; each truncation asked to keep at most 2 cells, at an epsilon so large
that the noise rounds to nothing. Run: python benchmarks/dp_scouting/opendp_truncation.py

    truncate_num_groups(2, keep="first")   keeps 1 cell, the smallest key (rank "dense" starts at 1
                                           and keeps rank < k); its noise is scaled for 2
    truncate_num_groups(2, keep="sample")  fails to plan ("multiple fields with name 'cell'")
    truncate_per_group(2, by=[])           keeps 2 rows, the first in the frame's order

transforms/dp_tables.py uses the last on one row per person and cell, in a random order.
"""

import opendp.prelude as dp
import polars as pl

dp.enable_features("contrib")
frame = pl.DataFrame({"person": [1] * 5, "cell": ["e", "d", "c", "b", "a"]})
keys = pl.DataFrame({"cell": ["a", "b", "c", "d", "e"]})
variants = {
    'truncate_num_groups(2, keep="first")': lambda q: q.truncate_num_groups(2, by=["cell"], keep="first"),
    'truncate_num_groups(2, keep="sample")': lambda q: q.truncate_num_groups(2, by=["cell"], keep="sample"),
    "truncate_per_group(2, by=[])": lambda q: q.truncate_per_group(2, by=[], keep="first"),
}
for label, truncate in variants.items():
    context = dp.Context.compositor(
        data=frame.lazy(),
        privacy_unit=dp.unit_of(contributions=1, identifier="person"),
        privacy_loss=dp.loss_of(epsilon=1000.0),
        split_evenly_over=1,
    )
    query = truncate(context.query().truncate_per_group(1, by=["cell"])).group_by("cell").agg(dp.len(signed=True)).with_keys(keys)
    try:
        kept = query.release().collect().filter(pl.col("len") > 0)["cell"].sort().to_list()
        print(f"{label}: keeps {kept}")
    except Exception as exc:  # noqa: BLE001 - the point is to show it
        print(f"{label}: fails: {str(exc).strip().splitlines()[0][:100]}")
