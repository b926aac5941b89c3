"""Issue 22 scouting, not part of tuomin: distinct buyers by day x store at epsilon = 1 for the
table, the privacy unit one customer (every row of theirs, on every date), with OpenDP's Polars
context; each customer counted at most once per cell and in at most CELLS cells. The same table
with Tumult Analytics is tumult_buyers.py. Run in a venv of their own (RESULTS.md, issue 22):

    python3 -m venv /tmp/dpenv && /tmp/dpenv/bin/pip install "opendp[polars]==0.16.0"
    /tmp/dpenv/bin/python benchmarks/dp_scouting/opendp_buyers.py LANDING [CELLS]
"""

import glob
import sys
import time

import numpy as np
import opendp.prelude as dp
import polars as pl

dp.enable_features("contrib")
files = sorted(glob.glob(f"{sys.argv[1]}/pos/*/*.csv"))
raw = pl.concat([pl.read_csv(f, infer_schema_length=0, columns=["doc_no", "store_code", "txn_time", "txn_id"]) for f in files])
raw = (
    raw.with_columns(
        pl.col("doc_no").str.to_uppercase().str.replace_all(r"[\s\-]", "").alias("customer"),
        pl.col("txn_time").str.slice(0, 10).alias("day"),
        pl.col("store_code").alias("store"),
    )
    .with_columns(pl.concat_str("day", pl.lit("|"), "store").alias("cell"))
    .select("customer", "cell")
)
# one row per buyer-day-store: "distinct buyers" is then a count with one contribution per cell
visits = raw.unique()
cells = sorted(visits["cell"].unique().to_list())  # stand-in for the public calendar x store list
keys = pl.DataFrame({"cell": cells})
exact = visits.group_by("cell").agg(pl.len().alias("exact"))
began = time.perf_counter()
context = dp.Context.compositor(
    data=visits.lazy(),
    privacy_unit=dp.unit_of(contributions=1, identifier="customer"),
    privacy_loss=dp.loss_of(epsilon=1.0),
    split_evenly_over=1,
)
cells_per_customer = int(sys.argv[2]) if len(sys.argv) > 2 else 10  # cells a customer is counted in, at most
query = (
    context.query()
    .truncate_per_group(1, by=["cell"])
    # keep="sample" (the default) fails to plan in OpenDP 0.16.0 with polars 1.36.1 ("multiple
    # fields with name 'cell'"); "first" keeps the first cells in the data's order.
    .truncate_num_groups(cells_per_customer, by=[pl.col("cell")], keep="first")
    .group_by("cell")
    .agg(dp.len())
    .with_keys(keys)
)
print(query.summarize(alpha=0.05))
released = query.release().collect()
seconds = time.perf_counter() - began
joined = released.join(exact, on=["cell"], how="left").fill_null(0)
scored = joined.filter(pl.col("exact") >= 20)
rel = ((scored["len"].cast(pl.Float64) - scored["exact"].cast(pl.Float64)).abs() / scored["exact"].cast(pl.Float64)).to_numpy()
print(f"cells {len(joined)}, scored {len(scored)}, median rel err {np.median(rel):.3%}, ", end="")
print(f"within 10% {np.mean(rel <= 0.1):.0%}, {seconds:.2f} s")
print("max cells per customer in the data:", visits.group_by("customer").len()["len"].max())
