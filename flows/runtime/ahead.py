"""Reading ahead: the next item made on another thread while the consumer works on this one."""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor


def ahead(items: Iterable) -> Iterator:
    """`items`, each produced on another thread while the consumer works on the one before.
    Reading CSV and Parquet, Arrow's kernels and Parquet's encoding release the GIL, so a pass
    keeps both cores busy; memory grows by one item."""
    end = object()
    source = iter(items)

    def step() -> object:
        return next(source, end)

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(contextvars.copy_context().run, step)
        while (item := pending.result()) is not end:
            pending = pool.submit(contextvars.copy_context().run, step)
            yield item
