"""Progress for long loops: a tqdm bar on the terminal and a line in the run log every ~10%."""

from __future__ import annotations

import logging
import sys
from typing import Callable, Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
Log = Callable[[str], None]

_logger = logging.getLogger("mtvcraft")


def default_log(message: str) -> None:
    _logger.info(message)


def track(items: Iterable[T], total: int | None = None, desc: str = "", log: Log | None = None, unit: str = "it") -> Iterator[T]:
    """Yield ``items`` while showing a terminal bar and logging progress at every ~10% (and at the end)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    log = log or default_log
    step = max(1, (total or 0) // 10)
    done = 0
    with tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=1.0) as bar:
        for item in items:
            yield item
            done += 1
            bar.update(1)
            if total and (done % step == 0 or done == total):
                log(f"{desc}: {done}/{total} {unit} ({100 * done // total}%)")
    if not total:
        log(f"{desc}: {done} {unit}")
