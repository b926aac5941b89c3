"""Privacy criteria, one small object each (as ARX's `criteria/`): what an equivalence class must
hold, judged on that class's figures, in numpy (the in-memory engine, the measurements, the GX
expectations) and in SQL (the out-of-core engine), with one tolerance. A criterion is written
here once; the callers only compute the figures.

    KAnonymity(k)               the class holds at least k people
    LDiversity(l, "distinct")   a sensitive attribute takes at least l values in the class
    LDiversity(l, "entropy")    its entropy is at least log(l)

The person-level criteria of a release (k^m against each person's own k, l with everything
beside it, one unit) are judged on the person frame: expectations/release.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Entropy is a sum of floats: a class at exactly log(l), or l distinct values counted as floats,
# must hold whichever order the sum ran in.
TOLERANCE = 1e-9


def people_sql(entity: str, rows: str) -> str:
    """A class's size in people, in SQL: its distinct entities, and each row without one a person
    of its own (the rule metrics.sizes applies in numpy)."""
    return f"count(DISTINCT {entity}) + coalesce(sum({rows}) FILTER (WHERE {entity} IS NULL), 0)"


@dataclass(frozen=True)
class KAnonymity:
    k: int

    def fails(self, people) -> np.ndarray:
        """Per class, from its size in people."""
        return np.asarray(people) < self.k

    def sql_fails(self, people: str) -> str:
        return f"({people}) < {int(self.k)}"


@dataclass(frozen=True)
class LDiversity:
    l: float
    measure: str = "distinct"  # or "entropy"

    def fails(self, distinct, entropy) -> np.ndarray:
        """Per class, from its distinct sensitive values and their entropy (natural log); only
        the one the measure reads is used."""
        if self.measure == "distinct":
            return np.asarray(distinct) < self.l - TOLERANCE
        return np.asarray(entropy) < np.log(self.l) - TOLERANCE

    def sql_fails(self, distinct: str, entropy: str) -> str:
        if self.measure == "distinct":
            return f"({distinct}) < {float(self.l) - TOLERANCE!r}"
        return f"({entropy}) < ln({float(self.l)!r}) - {TOLERANCE!r}"

    def fails_effective(self, effective) -> bool:
        """From the class's effective l: its distinct values, or exp(entropy) (the figure
        metrics.sensitive_figures reports)."""
        with np.errstate(divide="ignore"):
            return bool(self.fails(effective, np.log(effective)))
