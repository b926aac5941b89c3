"""One error tree (transforms/errors.py): every exception tuomin defines is a TuominError, and
the ones that mean "not done, nothing changed" are Refused, which is all the CLI asks."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import expectations
import flows
import transforms
from transforms.errors import Refused, Transient, TuominError

# Control flow, not an error: the run starts the release again, wider.
NOT_ERRORS = {"flows.pipeline.stages.Widen"}


def _defined_exceptions() -> dict[str, type]:
    found = {}
    for package in (flows, transforms, expectations):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if module.name.endswith("__main__"):  # runs the CLI when imported
                continue
            loaded = importlib.import_module(module.name)
            for name, value in vars(loaded).items():
                if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == loaded.__name__:
                    found[f"{loaded.__name__}.{name}"] = value
    return found


def test_every_exception_tuomin_defines_is_in_the_tree():
    found = _defined_exceptions()
    assert len(found) >= 20  # the walk found the packages' errors
    outside = sorted(name for name, cls in found.items() if not issubclass(cls, TuominError) and name not in NOT_ERRORS)
    assert not outside, outside


def test_refusals_are_refused_and_failures_are_not():
    found = {name.rsplit(".", 1)[1]: cls for name, cls in _defined_exceptions().items()}
    refused = {
        "BackupError", "ExportError", "KeyRefused", "LedgerBroken", "SubjectError", "UsageError", "WarehouseBusy",
        "WarehouseUnwritable", "PolicyError", "PseudonymKeyError", "UnitTooLarge", "DPRefused", "QueryRefused",
        "DPPolicyError", "LandingMismatch", "RetentionMismatch", "ForeignFile", "NotAWarehouse", "AssetsUnavailable",
    }  # fmt: skip
    failures = {"ReleaseFailed", "Unreachable", "ErasureFailed", "RetentionError", "PurgeIncomplete"}
    assert all(issubclass(found[name], Refused) for name in refused)
    assert not any(issubclass(found[name], Refused) for name in failures)
    assert [name for name, cls in found.items() if issubclass(cls, Transient) and cls is not Transient] == ["WarehouseBusy"]
