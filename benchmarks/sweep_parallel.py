"""Benchmark: a sweep's training stage, sequential against ``--runner ParallelRunner``.

A sweep of 2 latent sizes x 2 seeds (4 inVAE variants, fixed epochs, no early stopping)
trains on the embedded default data (3,000 cells, processed once, untimed) in a
throw-away copy of the project, through ``kedro run --pipelines sweep_bench --tags
training --params force_retrain=true,...`` as a user runs it:

- ``sequential``: the default runner, torch's own thread count (all cores);
- ``sequential, 1 thread``: the default runner with ``training.trainer.num_threads=1``;
- ``ParallelRunner``: one process per core, each given ``cores / workers`` threads by the
  project's hooks.

Each configuration runs ``--repeats`` times, alternating; the table gives the median
wall time of the whole ``kedro run`` (start-up included) and the peak RSS of its main
process (workers' memory is not included).

Usage::

    .venv/bin/python benchmarks/sweep_parallel.py
    .venv/bin/python benchmarks/sweep_parallel.py --epochs 10 --repeats 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    RESULTS,
    copy_project,
    machine_facts,
    markdown_table,
    median,
    run_measured,
    wait_for_quiet,
    write_csv,
)

# name: (extra kedro arguments, extra parameters)
CONFIGURATIONS = {
    "sequential": ([], ""),
    "sequential, 1 thread": ([], ",training.trainer.num_threads=1"),
    "ParallelRunner": (["--runner", "ParallelRunner"], ""),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/omics_vae_sweep_bench"))
    args = parser.parse_args()

    project = copy_project(args.workdir / "project")
    sweep = {"grid": {"training.hyperparameters.invae.n_latent_bio": [10, 20]}, "seeds": [0, 1]}
    (project / "conf" / "local" / "parameters_sweeps.yml").write_text(
        yaml.safe_dump({"sweeps": {"bench": sweep}})
    )
    kedro = [sys.executable, "-m", "kedro"]
    run_measured(
        [*kedro, "run", "--pipelines", "data_processing"],
        args.workdir / "unused.json",
        args.workdir / "logs" / "data_processing.log",
        cwd=project,
    )
    params = (
        f"training.trainer.max_epochs={args.epochs},"
        "training.trainer.early_stopping_patience=null,force_retrain=true"
    )
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in CONFIGURATIONS}
    for repeat in range(args.repeats):
        for name, (runner, extra_params) in CONFIGURATIONS.items():
            wait_for_quiet(max_busy=0.15, max_wait_s=120)
            command = [*kedro, "run", "--pipelines", "sweep_bench", "--tags", "training"]
            measurement = run_measured(
                [*command, *runner, "--params", params + extra_params],
                args.workdir / "unused.json",
                args.workdir / "logs" / f"{name.replace(', ', '_').replace(' ', '_')}_{repeat}.log",
                cwd=project,
            )
            timings[name].append((measurement.wall_s, measurement.peak_rss_mib))
            print(f"{name} #{repeat}: {measurement.wall_s:.1f} s", flush=True)

    reference = median(wall for wall, _ in timings["sequential"])
    rows = [
        {
            "configuration": name,
            "variants": 4,
            "epochs": args.epochs,
            "median wall (s)": round(median(wall for wall, _ in runs), 1),
            "speed-up vs sequential": round(reference / median(wall for wall, _ in runs), 2),
            "main process peak RSS (MiB)": round(median(rss for _, rss in runs)),
        }
        for name, runs in timings.items()
    ]
    write_csv(RESULTS / "sweep_parallel.csv", rows)
    facts = ", ".join(f"{key}: {value}" for key, value in machine_facts().items())
    (RESULTS / "sweep_parallel.md").write_text(f"{markdown_table(rows)}\n\nMachine: {facts}\n")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
