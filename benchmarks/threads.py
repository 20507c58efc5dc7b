"""Benchmark: torch threads on a 2-core machine shared with another job (issue 15, item 3).

inVAE trains ``--epochs`` epochs on the simulated 20,000 cells of
``benchmarks/train_speed.py`` (batch 128, the project's default), through the training
library's settings (``training.fitting``), with 1 thread, 2 threads and the default
(``training.trainer.num_threads: null``: ``models.threads.default_threads``). It does so
on a quiet machine and while a second process keeps one core busy (a Python busy loop,
started ``--settle`` seconds before). Runs are fresh
processes, interleaved, ``--rounds`` each; the report gives seconds per epoch (wall and
CPU) and the threads the default chose. Results: ``benchmarks/results/threads.{csv,md}``.

Usage::

    python benchmarks/threads.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_speed as ts
from _common import RESULTS, machine_facts, markdown_table, run_measured, write_csv

SETTINGS = ("1", "2", "default")


def worker(threads: str, data: Path, epochs: int, result: Path) -> None:
    import tempfile

    import anndata as ad
    import lightning as L
    import torch

    from omics_vae.models import get_model_class
    from omics_vae.models.threads import threads_of_this_process
    from omics_vae.models.trainer import FitSettings, fit

    adata = ad.read_h5ad(data)
    L.seed_everything(ts.SEED, verbose=False)
    model = get_model_class("invae").from_anndata(adata, ts._our_hyperparameters("invae"))
    tensors = model.make_tensors(adata, counts_layer=None)
    chosen = threads_of_this_process() if threads == "default" else int(threads)
    with tempfile.TemporaryDirectory(prefix="omics-vae-bench-ckpt-") as checkpoints:
        settings = FitSettings(
            max_epochs=epochs, batch_size=128, seed=ts.SEED, accelerator="cpu", devices=1,
            early_stopping_patience=None, enable_progress_bar=False,
            checkpoint_dir=checkpoints, num_threads=chosen,
        )  # fmt: skip
        wall, cpu = time.perf_counter(), time.process_time()
        fit(model, tensors.subset("train"), tensors.subset("val"), settings)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    result.write_text(
        json.dumps(
            {
                "threads": torch.get_num_threads(),
                "s/epoch": wall / epochs,
                "CPU s/epoch": cpu / epochs,
            }
        )
    )


def measure(setting: str, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    result = args.workdir / "threads.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", setting, "--data",
               str(data), "--epochs", str(args.epochs), "--result", str(result)]  # fmt: skip
    log = args.workdir / "logs" / f"threads-{setting}.log"
    return run_measured(command, result, log, cwd=args.workdir).report


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    table = []
    for machine in ("quiet", "one core busy"):
        for setting in SETTINGS:
            chosen = [r for r in rows if r["machine"] == machine and r["setting"] == setting]
            if not chosen:
                continue
            table.append(
                {
                    "machine": machine,
                    "num_threads": setting,
                    "threads used": "/".join(sorted({str(r["threads"]) for r in chosen})),
                    "s/epoch": round(statistics.median(r["s/epoch"] for r in chosen), 2),
                    "CPU s/epoch": round(statistics.median(r["CPU s/epoch"] for r in chosen), 2),
                    "rounds": len(chosen),
                }
            )
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--settle", type=float, default=90.0, help="seconds the busy loop runs first"
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/omics-vae-bench"))
    worker_args = parser.add_argument_group("worker (internal)")
    worker_args.add_argument("--worker", help=argparse.SUPPRESS)
    worker_args.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    worker_args.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.data, args.epochs, args.result)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    data = ts._prepared("sim20k", args.workdir)
    rows = []
    for machine in ("quiet", "one core busy"):
        busy = None
        if machine != "quiet":
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(args.settle)
        try:
            for round_number in range(args.rounds):
                for setting in SETTINGS:
                    row = {"machine": machine, "setting": setting, "round": round_number,
                           **measure(setting, data, args)}  # fmt: skip
                    print(json.dumps(row), flush=True)
                    rows.append(row)
        finally:
            if busy is not None:
                busy.kill()
    write_csv(RESULTS / "threads.csv", rows)
    facts = machine_facts()
    report = ["# Torch threads on a shared machine", "",
              f"Machine: {facts.get('cpu', '')}; command: `python benchmarks/threads.py "
              f"{' '.join(sys.argv[1:])}`.", "", markdown_table(summarise(rows))]  # fmt: skip
    (RESULTS / "threads.md").write_text("\n".join(report) + "\n")
    print(markdown_table(summarise(rows)))


if __name__ == "__main__":
    main()
