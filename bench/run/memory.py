"""Keep freed memory in the process instead of handing it back to the kernel after every step.

glibc serves allocations above a threshold (128 KiB at first, raised as blocks are freed,
never above 32 MiB) with fresh ``mmap`` pages and trims the heap top when more than twice
that is free. A training step allocates and frees tens of MB of temporaries (a ptb-small
step: logits, their gradient, exponentials, 16 MB each), so without this the next step
faults every page back in; the page faults and the tokens/s gained are measured in
``docs/performance.md`` ("The allocator"). The cost is memory the process keeps for its own
reuse: about one step's temporaries.

Other C libraries (macOS, musl) are left alone; so is a user who set glibc's own
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from typing import Any

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>
MMAP_THRESHOLD = 32 * 2**20  # glibc's maximum: blocks up to 32 MiB come from the reusable heap
TRIM_THRESHOLD = 2**30  # trim the heap top only when 1 GiB lies free there

_setting: dict[str, Any] = {"malloc": "default"}


def keep_freed_memory() -> dict[str, Any]:
    """Apply the settings once per process (idempotent); returns what is in force."""
    global _setting
    if _setting["malloc"] != "default" or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return dict(_setting)
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        _setting = {"malloc": "user's MALLOC_*_ environment"}
        return dict(_setting)
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1:
        _setting = {"malloc": "glibc", "mmap_threshold": MMAP_THRESHOLD, "trim_threshold": TRIM_THRESHOLD}
    return dict(_setting)


def describe() -> dict[str, Any]:
    """The allocator settings in force, for the run record."""
    return dict(_setting)
