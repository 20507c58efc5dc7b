"""Benchmark: how long a `kedro` command of the project takes before it does any work.

Three commands, each in a fresh process, in a temporary copy of the project:

- ``refusal``: ``kedro run --params trainng.trainer.max_epochs=1`` (a misspelt block),
  from start to the printed refusal;
- ``help``: ``kedro --help``;
- ``data_processing``: ``kedro run --pipelines data_processing`` on the embedded default
  data (3,000 cells), a whole data-only run.

Each is measured for this tree and, with ``--before <git revision>``, for that revision
(exported to its own copy and put first on ``PYTHONPATH``), interleaved within each
repeat so that a busy machine slows both alike. Wall seconds, CPU seconds (user + system,
``wait4``) and peak RSS per process.

Usage::

    .venv/bin/python benchmarks/startup.py --before 55eded8 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_facts, markdown_table, median, write_csv

PROJECT = Path(__file__).resolve().parents[1]
PARTS = ("conf", "src", "pyproject.toml", ".telemetry")
COMMANDS = {
    "refusal": ["run", "--params", "trainng.trainer.max_epochs=1"],
    "help": ["--help"],
    "data_processing": ["run", "--pipelines", "data_processing"],
}


def project_copy(root: Path, revision: str | None) -> Path:
    """The project's configuration and code (this tree's, or ``revision``'s)."""
    copy = root / (revision or "current")
    copy.mkdir(parents=True)
    if revision is None:
        for part in PARTS:
            source = PROJECT / part
            if source.is_dir():
                shutil.copytree(source, copy / part, ignore=shutil.ignore_patterns("local"))
            else:
                shutil.copy2(source, copy / part)
    else:
        archive = subprocess.run(
            ["git", "-C", str(PROJECT), "archive", revision, *PARTS],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "x", "-C", str(copy)], input=archive, check=True)
    (copy / "conf" / "local").mkdir(exist_ok=True)
    return copy


def measure(copy: Path, arguments: list[str]) -> dict[str, float]:
    """One `kedro <arguments>` process: wall and CPU seconds, peak RSS in MiB."""
    env = {**os.environ, "PYTHONPATH": str(copy / "src"), "KEDRO_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "kedro", *arguments],
        cwd=copy,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "exit": os.waitstatus_to_exitcode(status),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="git revision to compare with")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="omics-vae-startup-") as folder:
        trees = {"now": project_copy(Path(folder), None)}
        if args.before:
            trees[f"before ({args.before})"] = project_copy(Path(folder), args.before)
        for tree in trees.values():  # warm-up: creates mlflow.db, warms the file cache
            measure(tree, COMMANDS["data_processing"])
        runs = []
        for repeat in range(args.repeats):
            order = list(trees.items()) if repeat % 2 == 0 else list(trees.items())[::-1]
            for command, arguments in COMMANDS.items():
                for tree_name, tree in order:
                    runs.append({"command": command, "tree": tree_name, **measure(tree, arguments)})

    rows = []
    for command in COMMANDS:
        for tree_name in trees:
            mine = [r for r in runs if r["command"] == command and r["tree"] == tree_name]
            rows.append(
                {
                    "command": command,
                    "tree": tree_name,
                    "runs": len(mine),
                    "wall s (median)": round(median(r["wall_s"] for r in mine), 2),
                    "CPU s (median)": round(median(r["cpu_s"] for r in mine), 2),
                    "peak RSS MiB (median)": round(median(r["peak_rss_mib"] for r in mine)),
                    "exit codes": sorted({r["exit"] for r in mine}),
                }
            )
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "startup_runs.csv", runs)
    print(machine_facts())
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
