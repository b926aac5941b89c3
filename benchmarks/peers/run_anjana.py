"""Runs inside the peers' own environment (anjana and pycanon pin old numpy and pandas).

    python run_anjana.py CONFIG.json  ->  prints JSON: seconds, suppressed, levels; writes the output CSV

CONFIG: data (CSV), hierarchies (dir), quasi_identifiers, k, supp_level (percent), out (CSV).
"""

import json
import sys
import time

import numpy as np
import pandas as pd
from anjana.anonymity import k_anonymity_inner

config = json.load(open(sys.argv[1]))
data = pd.read_csv(config["data"], dtype=str)
hierarchies = {}
for qi, name in config["hierarchy_files"].items():
    if name:
        hierarchies[qi] = dict(pd.read_csv(f"{config['hierarchies']}/{name}", header=None, dtype=str))
    else:  # no hierarchy shipped (relationship): value -> *
        hierarchies[qi] = {0: data[qi].values, 1: np.array(["*"] * len(data))}
began = time.perf_counter()
anonymized, suppressed, levels = k_anonymity_inner(
    data, [], config["quasi_identifiers"], config["k"], config["supp_level"], hierarchies
)
seconds = time.perf_counter() - began
anonymized.to_csv(config["out"], index=False)
print(
    json.dumps(
        {"seconds": seconds, "suppressed": int(len(data) - len(anonymized)), "levels": {k: int(v) for k, v in levels.items()}}
    )
)
