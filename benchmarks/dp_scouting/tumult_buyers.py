"""Issue 22 scouting, not part of tuomin: opendp_buyers.py's table with Tumult Analytics (Spark,
local[2]). Its Spark workers need the venv's Python:

    python3 -m venv /tmp/tmltenv && /tmp/tmltenv/bin/pip install tmlt.analytics
    PYSPARK_PYTHON=/tmp/tmltenv/bin/python /tmp/tmltenv/bin/python benchmarks/dp_scouting/tumult_buyers.py LANDING
"""

import glob
import sys
import time

import numpy as np
import pandas as pd

began_all = time.perf_counter()
from pyspark.sql import SparkSession
from tmlt.analytics import AddRowsWithID, KeySet, MaxGroupsPerID, MaxRowsPerGroupPerID, PureDPBudget, QueryBuilder, Session

spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
spark.sparkContext.setLogLevel("ERROR")
frames = [
    pd.read_csv(f, dtype=str, usecols=["doc_no", "store_code", "txn_time"])
    for f in sorted(glob.glob(f"{sys.argv[1]}/pos/*/*.csv"))
]
raw = pd.concat(frames)
visits = pd.DataFrame(
    {
        "customer": raw["doc_no"].str.upper().str.replace(r"[\s\-]", "", regex=True),
        "cell": raw["txn_time"].str[:10] + "|" + raw["store_code"],
    }
).drop_duplicates()
exact = visits.groupby("cell").size()
started = time.perf_counter()
session = Session.from_dataframe(
    privacy_budget=PureDPBudget(1.0),
    source_id="visits",
    dataframe=spark.createDataFrame(visits),
    protected_change=AddRowsWithID(id_column="customer"),
)
query = (
    QueryBuilder("visits")
    .enforce(MaxGroupsPerID("cell", 10))
    .enforce(MaxRowsPerGroupPerID("cell", 1))
    .groupby(KeySet.from_dict({"cell": sorted(exact.index)}))
    .count()
)
out = session.evaluate(query, PureDPBudget(1.0)).toPandas().set_index("cell")["count"]
seconds = time.perf_counter() - started
rel = ((out - exact).abs() / exact).to_numpy()
total = time.perf_counter() - began_all
print(f"cells {len(out)}, median rel err {np.median(rel):.3%}, within 10% {np.mean(rel <= 0.1):.0%}, ", end="")
print(f"query {seconds:.1f} s, with Spark start {total:.1f} s")
