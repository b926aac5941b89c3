"""Data Docs' assets are fetched once per machine into a shared cache: processes that build docs at
the same moment (parallel tests, two flows) must each end with the package, not with a collision."""

from __future__ import annotations

import multiprocessing

from expectations import offline

SMALL = offline.PACKAGES["popper.js"]  # the smallest pinned tarball


def _unpack(cache: str) -> str:
    offline.CACHE = type(offline.CACHE)(cache)
    return str(offline._unpacked(SMALL))


def test_processes_unpacking_the_same_package_at_once_all_get_it(tmp_path):
    cache = tmp_path / "docs-assets"
    with multiprocessing.get_context("fork").Pool(4) as pool:
        roots = pool.map(_unpack, [str(cache)] * 4)
    assert len(set(roots)) == 1 and (cache / f"popper.js-{SMALL.version}" / "package" / "package.json").is_file()
    assert [p.name for p in cache.iterdir()] == [f"popper.js-{SMALL.version}"]  # no staging copy left behind
