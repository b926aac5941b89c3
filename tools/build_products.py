"""Rebuild policies/hierarchies/product.csv, the product hierarchy the POS policy generalizes
sales with: SKU -> category/brand -> category -> *. It is the shop's product master (here the
sample generator's catalogue, which plays the shop's systems); brand labels carry their category
so that a brand sold in two categories never joins them.

    .venv/bin/python tools/build_products.py
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sample_data import world  # noqa: E402  (after the path is set)
from sample_data.generator import _skus  # noqa: E402


def main() -> None:
    rows = [[sku, f"{category}/{brand}", category, "*"] for sku, (brand, _, category, _) in zip(_skus(), world.PRODUCTS)]
    with (REPO / "policies" / "hierarchies" / "product.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(sorted(rows))
    print(f"product.csv: {len(rows)} SKUs")


if __name__ == "__main__":
    main()
