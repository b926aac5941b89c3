"""One level per column for the whole release: every partition of a dataset publishes each
generalized column at the same level, so that a column means one thing in every file (a GROUP BY
across dates never mixes stores with channels, or days with months).

The privacy engine picks one set of levels for every unit it solves together. The release's levels
for a dataset are the highest level any of its published partitions holds, per column (the
floor). A run's units are solved with their lowest allowed levels raised to the floor
(SourcePolicy.at_least), so they publish at the floor or above; when they need more, the run
solves every unit of the dataset again, together, at the new levels (one step, not a cascade of
dates). A unit left below the floor by a run that died is *stale*, and the next run rebuilds it.
Levels only rise.
Coarser is never less private (classes only merge), and every republished date passes its gates
again before anything is renamed into place.
"""

from __future__ import annotations

from pathlib import Path

from flows.storage import ledger
from transforms.policy import SourcePolicy


def floors(restricted: Path) -> dict[str, dict[str, int]]:
    """Per dataset, per column: the highest level a published partition holds."""
    found: dict[str, dict[str, int]] = {}
    for (dataset, _), entry in ledger.partition_entries(restricted).items():
        floor = found.setdefault(dataset, {})
        for column, level in entry.data.levels.items():
            floor[column] = max(floor.get(column, 0), int(level))
    return found


def stale(restricted: Path, policies: dict[str, SourcePolicy]) -> dict[str, list[str]]:
    """Units with a partition below its dataset's floor (as far as the policy's levels allow):
    {dataset: [periods]}."""
    floor = floors(restricted)
    found: dict[str, list[str]] = {}
    for (dataset, period), entry in sorted(ledger.partition_entries(restricted).items()):
        policy = policies.get(dataset)
        if policy is None:
            continue
        reachable = {c.published_name: c.level_range[1] for c in policy.quasi_identifiers}
        levels = entry.data.levels
        wanted = {c: min(lv, reachable.get(c, lv)) for c, lv in floor.get(dataset, {}).items()}
        if any(levels.get(c, 0) < lv for c, lv in wanted.items()):
            found.setdefault(dataset, []).append(period)
    return found
