"""Helpers shared by the benchmark scripts: measured subprocesses, machine facts, tables.

Standard library only, so that a benchmark's worker can import it from any interpreter
(the scvi-tools and inVAE virtual environments do not have this project installed).
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Measurement:
    """One subprocess run: its wall time, its peak resident memory and what it reported.

    Attributes:
        wall_s: Seconds from start to exit of the process, interpreter start included.
        peak_rss_mib: The process's peak resident set size (``ru_maxrss`` from ``wait4``).
        cpu_s: User plus system CPU seconds of the process (from ``wait4``): steadier than
            wall time on a shared machine.
        report: The JSON object the worker wrote to its result file (empty if none).
    """

    wall_s: float
    peak_rss_mib: float
    report: dict[str, Any]
    cpu_s: float = float("nan")


class WorkerError(RuntimeError):
    """A measured subprocess exited with an error."""


def run_measured(
    command: Sequence[str],
    result_path: Path,
    log_path: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Measurement:
    """Runs ``command`` in a fresh process and measures its wall time and peak RSS.

    ``os.wait4`` gives the resource usage of exactly this child, so peak memory is the
    process's own high-water mark, C extensions and torch allocations included.

    Args:
        command: The program and its arguments.
        result_path: File the worker writes its JSON report to (removed first).
        log_path: File that receives the worker's stdout and stderr.
        cwd: Working directory of the worker.
        env: Environment of the worker; the parent's when None.

    Returns:
        The measurement.

    Raises:
        WorkerError: The worker exited with a non-zero status; the message holds the
            end of its log.
    """
    result_path.unlink(missing_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(command), cwd=cwd, env=None if env is None else dict(env), stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise WorkerError(f"{' '.join(command)} exited with {process.returncode}:\n{tail}")
    report = json.loads(result_path.read_text()) if result_path.exists() else {}
    cpu = usage.ru_utime + usage.ru_stime
    return Measurement(wall, usage.ru_maxrss / 1024, report, cpu)


def cpu_busy_fraction(window_s: float = 2.0) -> float:
    """Share of all cores' time that was busy over the next ``window_s`` seconds (Linux)."""
    first = _cpu_times()
    time.sleep(window_s)
    second = _cpu_times()
    busy = (second[0] - first[0]) / max(second[1] - first[1], 1)
    return min(max(busy, 0.0), 1.0)


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all cores, from the first line of /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def wait_for_quiet(max_busy: float, max_wait_s: float) -> float:
    """Waits until other processes leave the cores mostly idle, at most ``max_wait_s``.

    On a shared machine other jobs distort timings; this waits for a 2-second window in
    which less than ``max_busy`` of the cores' time was busy.

    Returns:
        The busy fraction of the last window (recorded beside each measurement).
    """
    deadline = time.monotonic() + max_wait_s
    busy = cpu_busy_fraction()
    while busy >= max_busy and time.monotonic() < deadline:
        busy = cpu_busy_fraction()
    return busy


def with_threads(threads: int, env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's environment) with every BLAS/OpenMP thread
    count set to ``threads``, for a measured child process."""
    variables = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    return {**(os.environ if env is None else env), **{v: str(threads) for v in variables}}


def self_peak_rss_mib() -> float:
    """Peak resident memory of the calling process so far, in MiB (Linux units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_report(path: Path, report: Mapping[str, Any]) -> None:
    """Writes a worker's JSON report."""
    path.write_text(json.dumps(report, indent=2, default=float))


def median(values: Iterable[float]) -> float:
    """Median of the finite values; NaN when there are none."""
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else float("nan")


def machine_facts(python: str = sys.executable) -> dict[str, str]:
    """CPU, memory and version facts to print beside a results table."""
    facts = {
        "nproc": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "memory": f"{_memory_gib():.1f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
    }
    facts.update(_package_versions(python))
    return facts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3


def _package_versions(python: str) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json\n"
        "out = {}\n"
        "for name in ('torch', 'lightning', 'kedro', 'scanpy', 'anndata', 'numpy'):\n"
        "    try:\n"
        "        out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        pass\n"
        "print(json.dumps(out))\n"
    )
    completed = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(completed.stdout)


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Writes dict rows as CSV; the columns are the keys of the first row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A GitHub-flavoured markdown table of dict rows (floats to 3 significant digits)."""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DATA_LAYERS = (
    "01_raw",
    "02_intermediate",
    "03_primary",
    "04_feature",
    "05_model_input",
    "06_models",
    "07_model_output",
    "08_reporting",
)


def copy_project(target: Path) -> Path:
    """A throw-away copy of the project: pyproject, conf (no local files), src, data dirs."""
    import shutil

    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in ("pyproject.toml", ".telemetry"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, target / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "src", target / "src", ignore=ignore)
    shutil.copytree(REPO / "conf", target / "conf", ignore=shutil.ignore_patterns("local"))
    (target / "conf" / "local").mkdir()
    for layer in DATA_LAYERS:
        (target / "data" / layer).mkdir(parents=True)
    return target
