"""Rebuild the generated generalization hierarchies in policies/hierarchies/.

The tables are policy data (reviewed and committed); this script only records where they come
from so a reviewer can regenerate and diff them. It needs two packages the pipeline does not:

    uv run --with country-converter==1.3.2 --with airportsdata==20250909 tools/build_reference.py

- nationality.csv  ISO 3166-1 alpha-3 -> UN M49 sub-region -> continent -> *   (country-converter)
- destination.csv  IATA airport code -> country alpha-3 -> sub-region -> continent -> *  (airportsdata)
"""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import airportsdata

OUT = Path(__file__).resolve().parents[1] / "policies" / "hierarchies"


def _countries() -> dict[str, tuple[str, str, str]]:
    """alpha-2 -> (alpha-3, UN sub-region, continent), from country-converter's own table."""
    table = resources.files("country_converter").joinpath("country_data.tsv").read_text("utf-8")
    rows = csv.DictReader(table.splitlines(), delimiter="\t")
    out = {}
    for row in rows:
        continent = row["continent"] or "Other"
        out[row["ISO2"]] = (row["ISO3"], row["UNregion"] or continent, continent)
    return out


def _write(name: str, rows: list[list[str]]) -> None:
    with (OUT / name).open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(sorted(rows))
    print(f"{name}: {len(rows)} values")


def main() -> None:
    countries = _countries()
    _write("nationality.csv", [[a3, sub, cont, "*"] for a3, sub, cont in countries.values()])
    airports = airportsdata.load("IATA")
    rows = []
    for code, airport in airports.items():
        if airport["country"] in countries:
            a3, sub, cont = countries[airport["country"]]
            rows.append([code, a3, sub, cont, "*"])
    _write("destination.csv", rows)


if __name__ == "__main__":
    main()
