"""Nothing published changes unless a change means it to: the test landing, the policies and the
test key give the rows and metadata committed in tests/data/published.json (run ids, times and
temporary paths aside; tests/published_digest.py). A deliberate change (a policy, an operator)
rewrites the file with TUOMIN_UPDATE_PUBLISHED=1 and the diff shows what it changed."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.published_digest import digest

EXPECTED = Path(__file__).parents[1] / "data" / "published.json"


def test_the_same_inputs_publish_the_same_rows_and_metadata(published):
    found = digest(published.warehouse)
    if os.environ.get("TUOMIN_UPDATE_PUBLISHED") == "1":
        EXPECTED.write_text(json.dumps(found, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    assert sorted(found) == sorted(expected), "other partitions than before"
    for name, partition in expected.items():
        for part in ("rows", "schema", "rows_sha256", "metadata"):
            assert found[name][part] == partition[part], f"{name}: {part} differs"
