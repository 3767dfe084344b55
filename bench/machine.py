"""The machine a benchmark ran on, recorded beside its numbers (BENCHMARKS.md: machine, command, date)."""

from __future__ import annotations

import importlib
import os
import platform
from typing import Any

import torch


def load_average() -> float:
    """The 1-minute load average (the machine is shared: a high load explains a slow row)."""
    return os.getloadavg()[0]


def machine_info(packages: tuple[str, ...] = ()) -> dict[str, Any]:
    """CPU architecture, cores, memory, Python and torch versions (and ``packages``' versions), and the load now."""
    mem = "unknown memory"
    try:
        kb = int(next(line for line in open("/proc/meminfo") if line.startswith("MemTotal")).split()[1])
        mem = f"{kb / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    info = {"machine": f"{platform.machine()} {platform.system()}", "cores": os.cpu_count(), "memory": mem,
            "python": platform.python_version(), "torch": torch.__version__}
    info.update({name: importlib.import_module(name).__version__ for name in packages})
    return {**info, "load_start": load_average()}
