"""Peak memory of *this* process, measured so a child's figure is its own.

``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is not that on Linux: the kernel keeps the
high-water mark across ``exec``, so a child started by fork+exec from a parent that holds
the sandboxes (every seeded object in memory) reports the parent's peak at fork time. That
made the backfill look as if its memory grew with N. ``VmHWM`` in ``/proc/self/status`` is
the peak of this process's own address space, reset by ``exec``.
"""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mib() -> float:
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: best effort
