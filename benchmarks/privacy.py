"""Privacy engine benchmark (issue 5): tuomin vs anjana on UCI Adult, checked by pycanon.

UCI Adult with its hierarchies (../shared/benchmarks/adult), 8 quasi-identifiers, sensitive
attribute salary-class, a 5% record-suppression limit, k = 5, 10, 50; then 300,000 and 1,000,000
rows resampled from Adult with noise (drawn with replacement, age shifted by up to +-2, snapped to
an age the hierarchy knows): plain copies would be trivially k-anonymous.

For each run, side by side: runtime (tuomin: encoding, search and producing the anonymized table;
anjana: its k_anonymity call), suppressed rows, generalization levels, information loss (ARX's
loss metric and discernibility, computed the same way for both outputs), and k and l as pycanon
measures them on each output (an independent oracle). anjana and pycanon pin old numpy and pandas,
so they run in their own environment, benchmarks/.peers (created on first use with uv).

    make bench-privacy        # or: .venv/bin/python benchmarks/privacy.py [--sizes 32561,300000,1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from transforms.anonymity import search  # noqa: E402
from transforms.hierarchy import TableHierarchy, encode  # noqa: E402

ADULT = ROOT.parent / "shared" / "benchmarks" / "adult"
PEERS = ROOT / "benchmarks" / ".peers"
QIS = {
    "age": "age.csv",
    "education": "education.csv",
    "marital-status": "marital.csv",
    "occupation": "occupation.csv",
    "sex": "sex.csv",
    "native-country": "country.csv",
    "race": "race.csv",
    "relationship": None,
}
SENSITIVE = "salary-class"


def peers_python() -> Path:
    """The peers' interpreter, created once with uv from benchmarks/peers/requirements.txt."""
    python = PEERS / "bin" / "python"
    if not python.exists():
        uv = ROOT / ".tools" / "bin" / "uv"
        subprocess.run([str(uv), "venv", "-q", "--python", "python3", str(PEERS)], check=True)
        subprocess.run(
            [
                str(uv),
                "pip",
                "install",
                "-q",
                "--python",
                str(python),
                "-r",
                str(ROOT / "benchmarks" / "peers" / "requirements.txt"),
            ],
            check=True,
        )
    return python


def load_adult() -> pd.DataFrame:
    data = pd.read_csv(ADULT / "adult.csv", skipinitialspace=True, dtype=str).dropna(how="all")
    return data[list(QIS) + [SENSITIVE]]


def hierarchies(data: pd.DataFrame) -> dict[str, TableHierarchy]:
    out = {}
    for qi, name in QIS.items():
        out[qi] = (
            TableHierarchy.from_csv(ADULT / "hierarchies" / name)
            if name
            else TableHierarchy([[v, "*"] for v in sorted(data[qi].unique())])
        )
    return out


def resample(data: pd.DataFrame, rows: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = data.iloc[rng.integers(0, len(data), rows)].reset_index(drop=True)
    known = np.array(sorted(int(a) for a in pd.read_csv(ADULT / "hierarchies" / "age.csv", header=None, dtype=str)[0]))
    shifted = out["age"].astype(int).to_numpy() + rng.integers(-2, 3, rows)
    above = np.clip(np.searchsorted(known, shifted), 1, len(known) - 1)  # nearest known age
    nearest = np.where(shifted - known[above - 1] <= known[above] - shifted, known[above - 1], known[above])
    out["age"] = nearest.astype(str)
    return out


def run_tuomin(data: pd.DataFrame, trees: dict[str, TableHierarchy], k: int) -> tuple[pd.DataFrame, dict]:
    began = time.perf_counter()
    encoded = [encode(qi, pa.array(data[qi]), trees[qi]) for qi in QIS]
    solution = search(encoded, {e.name: (0, e.hierarchy.top) for e in encoded}, k, 0.05)
    kept = pa.array(np.flatnonzero(~solution.suppressed))
    out = pd.DataFrame({e.name: e.column(solution.levels[e.name], kept).to_pylist() for e in encoded})
    out[SENSITIVE] = data[SENSITIVE].to_numpy()[~solution.suppressed]
    seconds = time.perf_counter() - began
    return out, {
        "seconds": seconds,
        "suppressed": int(solution.suppressed.sum()),
        "levels": solution.levels,
        "nodes": f"{solution.nodes_evaluated}/{solution.nodes_total}",
    }


def run_anjana(python: Path, csv: Path, k: int, out: Path, timeout: int) -> dict:
    config = {
        "data": str(csv),
        "hierarchies": str(ADULT / "hierarchies"),
        "hierarchy_files": QIS,
        "quasi_identifiers": list(QIS),
        "k": k,
        "supp_level": 5,
        "out": str(out),
    }
    path = out.with_suffix(".json")
    path.write_text(json.dumps(config))
    try:
        done = subprocess.run(
            [str(python), str(ROOT / "benchmarks" / "peers" / "run_anjana.py"), str(path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    except subprocess.TimeoutExpired:
        return {"seconds": None, "timeout": timeout}
    return json.loads(done.stdout.strip().splitlines()[-1])


def pycanon(python: Path, csv: Path) -> dict:
    done = subprocess.run(
        [str(python), str(ROOT / "benchmarks" / "peers" / "run_pycanon.py"), str(csv), ",".join(QIS), SENSITIVE],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def information_loss(output: pd.DataFrame, source: pd.DataFrame, trees: dict[str, TableHierarchy]) -> dict:
    """ARX's loss and discernibility of an anonymized table, from its values alone (so both tools
    are measured the same way): a published value merging m of the attribute's d distinct values
    loses (m-1)/(d-1); a suppressed record loses 1 on every attribute and counts n in
    discernibility."""
    n, suppressed = len(source), len(source) - len(output)
    per_attribute = {}
    for qi, tree in trees.items():
        domain = sorted(source[qi].unique())
        merged = {}
        for level in range(tree.top + 1):
            labels = tree.generalize(pa.array(domain), level).to_pylist()
            for label in set(labels):
                merged.setdefault(label, labels.count(label))
        groups = output[qi].map(merged).fillna(1)
        per_attribute[qi] = float(((groups - 1) / max(len(domain) - 1, 1)).sum() + suppressed) / n
    sizes = output.groupby(list(trees), dropna=False).size().to_numpy()
    return {
        "loss": float(np.mean(list(per_attribute.values()))),
        "discernibility": int((sizes.astype(np.int64) ** 2).sum() + suppressed * n),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32561,300000,1000000")
    parser.add_argument("--ks", default="5,10,50")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed to each anjana run")
    args = parser.parse_args()
    python = peers_python()
    adult = load_adult()
    trees = hierarchies(adult)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in map(int, args.sizes.split(",")):
            data = adult if size == len(adult) else resample(adult, size)
            source = Path(tmp) / f"data_{size}.csv"
            data.to_csv(source, index=False)
            for k in map(int, args.ks.split(",")):
                if size > len(adult) and k == 50:
                    continue
                ours, ours_run = run_tuomin(data, trees, k)
                ours_csv = Path(tmp) / f"tuomin_{size}_{k}.csv"
                ours.to_csv(ours_csv, index=False)
                theirs_csv = Path(tmp) / f"anjana_{size}_{k}.csv"
                theirs_run = run_anjana(python, source, k, theirs_csv, args.timeout)
                for tool, run, csv in (("tuomin", ours_run, ours_csv), ("anjana", theirs_run, theirs_csv)):
                    if run.get("seconds") is None:
                        rows.append({"rows": size, "k": k, "tool": tool, "seconds": f"> {run['timeout']}"})
                        continue
                    output = pd.read_csv(csv, dtype=str)
                    check = pycanon(python, csv)
                    rows.append(
                        {
                            "rows": size,
                            "k": k,
                            "tool": tool,
                            "seconds": round(run["seconds"], 2),
                            "suppressed": f"{run['suppressed']} ({run['suppressed'] / size:.1%})",
                            **information_loss(output, data, trees),
                            "pycanon k": check["k"],
                            "pycanon l": check["l_distinct"],
                            "levels": " ".join(f"{q[:4]}{run['levels'][q]}" for q in QIS),
                        }
                    )
                print(markdown(rows[-2:]), file=sys.stderr, flush=True)
    print(markdown(rows))


def markdown(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(c for row in rows for c in row))
    cell = lambda v: f"{v:.4f}" if isinstance(v, float) and not v.is_integer() else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows])


if __name__ == "__main__":
    main()
