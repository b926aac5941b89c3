"""Runs inside the peers' own environment: pycanon's k, l, entropy l and t for a CSV.

python run_pycanon.py FILE QI1,QI2,... SA  ->  prints JSON
"""

import json
import sys
import time

import pandas as pd
from pycanon import anonymity

path, qi, sa = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
data = pd.read_csv(path)
began = time.perf_counter()
out = {"k": int(anonymity.k_anonymity(data, qi)), "l_distinct": int(anonymity.l_diversity(data, qi, sa))}
out["seconds_k_l"] = time.perf_counter() - began
if len(sys.argv) > 4:  # the full set, as the oracle file for the tests records it
    out["l_entropy"] = int(anonymity.entropy_l_diversity(data, qi, sa))
    out["t_closeness"] = float(anonymity.t_closeness(data, qi, sa))
print(json.dumps(out))
