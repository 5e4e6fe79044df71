"""Requests sized against the machine: a command that would need more memory than is free is refused
before it allocates, with a message saying how much it needs and what to ask for instead."""

from __future__ import annotations

import os

from factorlab.errors import ResourceError

#: The share of the available memory one request may plan to use.
SHARE = 0.8


def available_memory() -> int:
    """Bytes of memory available to new allocations (Linux: MemAvailable; elsewhere the free physical pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**63 - 1  # unknown: do not refuse


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_memory(need: int, request: str, fix: str) -> None:
    """A ResourceError when `need` bytes exceed SHARE of the available memory."""
    free = available_memory()
    if need > SHARE * free:
        raise ResourceError(
            f"{request} would need about {gib(need)} of memory, but only {gib(free)} is available "
            f"(a request may use up to {SHARE:.0%} of it); {fix}"
        )
