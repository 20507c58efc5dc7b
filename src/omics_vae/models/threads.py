"""How many CPU threads a training uses when the user does not say (torch-free).

Small models multiply small matrices, and torch's OpenMP threads wait for each other at
the end of every operation. When one of them shares its core with another job, every
operation waits for it, and an epoch runs many times slower than on one thread
(docs/benchmarks.md, "Threads on a shared machine"). So the default counts the cores
this process may use and leaves out those other processes keep busy right now (a short
sample of /proc/stat: the load average lags by a minute and counts runs just ended).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path

logger = logging.getLogger(__name__)

THREAD_VARIABLE = "OMP_NUM_THREADS"
# Long enough to see a busy core (100 scheduler ticks a second), short beside a training.
SAMPLE_SECONDS = 0.3


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads(busy: float | None = None) -> int:
    """Threads for torch: ``OMP_NUM_THREADS`` when the user set it, else the usable
    cores less the ones other processes keep busy, at least one.

    Args:
        busy: Cores in use by other processes; default: ``busy_cores()``.
    """
    if os.environ.get(THREAD_VARIABLE, "").isdigit() and int(os.environ[THREAD_VARIABLE]) > 0:
        return int(os.environ[THREAD_VARIABLE])
    if busy is None:
        busy = busy_cores()
    cores = usable_cores()
    return max(1, min(cores, round(cores - busy)))


def busy_cores(window_s: float = SAMPLE_SECONDS) -> float:
    """Cores other processes keep busy now: the machine's busy time over ``window_s``
    (/proc/stat), less this process's own. Where /proc/stat cannot be read, the
    1-minute load average, which lags: a run that just ended still counts."""
    try:
        before, own_before = _machine_times(), sum(os.times()[:2])
        time.sleep(window_s)
        after, own_after = _machine_times(), sum(os.times()[:2])
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0]
    busy_share = (after[0] - before[0]) / max(after[1] - before[1], 1)
    cores = os.cpu_count() or 1
    return max(0.0, busy_share * cores - (own_after - own_before) / window_s)


def _machine_times() -> tuple[int, int]:
    """(busy, total) scheduler ticks of all cores, from the first line of /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


@functools.cache
def threads_of_this_process() -> int:
    """``default_threads()`` decided once, when this process first trains: two trainings
    in one process (a run and its resumption, a sweep's variants) use the same number,
    so their floating-point sums agree."""
    if os.environ.get(THREAD_VARIABLE):
        threads, reason = default_threads(), f"{THREAD_VARIABLE}={os.environ[THREAD_VARIABLE]}"
    else:
        busy = busy_cores()
        threads = default_threads(busy)
        reason = f"{usable_cores()} usable cores, {busy:.1f} kept busy by other processes"
    logger.info(
        "Training on %d CPU thread(s): %s; set the training block's num_threads to choose",
        threads,
        reason,
    )
    return threads
