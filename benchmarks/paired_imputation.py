"""Paired imputation on CITE-seq: the joint VAE against the baselines of the same run.

Runs `kedro run --pipelines paired` in a copy of the project with platform A = RNA
(counts per 10k, log1p, 2,000 most variable genes) and platform B = 49 surface proteins
(counts per 10k, log1p), 70/10/20 % train/val/test cells, once per training seed, and
writes the test-split scores of every method to benchmarks/results/paired_imputation.*.

    python benchmarks/paired_imputation.py [--seeds 0 1 2] [--split-seed 0] [--project PATH]

Another ``--split-seed`` draws other test cells; its results go to
``paired_imputation_split<seed>.*``, so the committed split-0 results stay.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RESULTS, copy_project, machine_facts, markdown_table, write_csv

DATA = REPO.parent / "shared" / "data"
PROCESSING = {
    "platform_a": {
        "name": "rna",
        "normalize_total": 10000,
        "log": "log1p",
        "top_variable_features": 2000,
    },
    "platform_b": {"name": "protein", "normalize_total": 10000, "log": "log1p"},
    "split": {"train": 0.7, "val": 0.1, "test": 0.2, "seed": 0},
}


def run_seed(project: Path, seed: int) -> list[dict]:
    """One `kedro run --pipelines paired`; the summary rows of its evaluation."""
    subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--pipelines", "paired", "--params",
         f"paired.training.seed={seed},paired.training.trainer.num_threads=1"],
        cwd=project, check=True, capture_output=True,
    )  # fmt: skip
    import pandas as pd

    latest = sorted((project / "data/08_reporting/paired_imputation_summary.csv").glob("*/*"))
    rows = pd.read_csv(latest[-1]).to_dict(orient="records")
    return [{"seed": seed, **row} for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the cell split")
    parser.add_argument("--project", type=Path, default=REPO, help="project to copy")
    args = parser.parse_args()
    processing = copy.deepcopy(PROCESSING)
    processing["split"]["seed"] = args.split_seed
    stem = "paired_imputation" + (f"_split{args.split_seed}" if args.split_seed else "")
    with tempfile.TemporaryDirectory() as tmp:
        project = copy_project(Path(tmp) / "project") if args.project == REPO else args.project
        local = project / "conf" / "local"
        local.mkdir(parents=True, exist_ok=True)
        catalog = {
            f"platform_{role}_raw": {"type": "pandas.CSVDataset", "filepath": str(DATA / name)}
            for role, name in (("a", "citeseq_rna.csv.gz"), ("b", "citeseq_adt.csv.gz"))
        }
        (local / "catalog_paired.yml").write_text(yaml.safe_dump(catalog))
        (local / "parameters_paired.yml").write_text(
            yaml.safe_dump({"paired": {"processing": processing}})
        )
        rows = [row for seed in args.seeds for row in run_seed(project, seed)]
    write_csv(RESULTS / f"{stem}.csv", rows)
    table = []
    for direction in dict.fromkeys(r["direction"] for r in rows):
        for method in dict.fromkeys(r["method"] for r in rows):
            chosen = [r for r in rows if r["direction"] == direction and r["method"] == method]
            values = [r["pearson"] for r in chosen]
            table.append(
                {
                    "direction": direction,
                    "method": method,
                    "per-feature Pearson r (mean over seeds)": round(statistics.mean(values), 3),
                    "min..max over seeds": f"{min(values):.3f}..{max(values):.3f}",
                    "Spearman": round(statistics.mean(r["spearman"] for r in chosen), 3),
                    "R²": round(statistics.mean(r["r2"] for r in chosen), 3),
                    "per-sample r": round(statistics.mean(r["sample_pearson"] for r in chosen), 3),
                }
            )
    facts = machine_facts()
    text = (
        markdown_table(table) + "\n\nMachine: " + ", ".join(f"{k}: {v}" for k, v in facts.items())
    )
    (RESULTS / f"{stem}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
