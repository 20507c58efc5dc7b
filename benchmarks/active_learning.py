"""Benchmark: do the evaluation's suggested cells teach the semi-supervised inVAE more than
as many cells drawn at random? (issue 13, item 5: the active-learning loop)

Per dataset (``pbmc_3chem`` and ``simulated``, prepared exactly as
``benchmarks/integration_quality.py`` prepares them: half of the largest batch's labels
hidden as ``unknown`` in ``cell_type_hidden``), one data-processing run, then per seed:

1. **round 1**: ``kedro run --pipelines training,embedding`` of the semi-supervised inVAE
   (``training.covariates.bio=[cell_type_hidden]``, ``unlabelled_category=unknown``);
2. **suggested**: the ``--n-cells`` cells the evaluation's suggestion node picks from
   those embeddings (``evaluation.suggestions.suggest_cells_to_label`` with the project's
   default settings), labelled with their true cell type in
   ``data/01_raw/new_labels.csv``, then the same ``kedro run`` (the run merges them);
3. **random**: as many unlabelled training cells drawn uniformly (seeded), labelled and
   trained on the same way.

Scores (against the true ``cell_type``): accuracy and macro-F1 of the predicted labels
on the hidden cells that neither strategy labelled (the same cells for all three rows of
a seed), and accuracy on the test split. Results:
``benchmarks/results/active_learning_<dataset>.{csv,md}``.

Usage (from the repository root, the project's virtual environment active)::

    python benchmarks/active_learning.py                  # both datasets, 3 seeds
    python benchmarks/active_learning.py --data pbmc_3chem --seeds 0 --epochs 5   # plumbing
"""

from __future__ import annotations

import argparse
import shutil
import statistics
from pathlib import Path
from typing import Any

import integration_quality as iq
from _common import RESULTS, machine_facts, markdown_table, write_csv

STRATEGIES = ("round 1", "suggested", "random")
NEW_LABELS = Path("data") / "01_raw" / "new_labels.csv"


def train_round(bench: iq.Bench, seed: int, strategy: str, labels: Any | None) -> iq.Run:
    """One training + embedding run of the semi-supervised inVAE, with ``labels``
    (``cell_id``, ``label``) as the expert's new labels (none for round 1)."""
    new_labels = bench.project / NEW_LABELS
    new_labels.unlink(missing_ok=True)
    if labels is not None:
        labels.to_csv(new_labels, index=False)
    run = iq.Run("invae_semisupervised", seed)
    run.extra["strategy"] = strategy
    iq.train_ours(bench, run)
    new_labels.unlink(missing_ok=True)
    return run


def suggested_cells(run: iq.Run, n_cells: int) -> list[str]:
    """The cells the evaluation's suggestion node picks from ``run``'s embeddings."""
    import anndata as ad

    from omics_vae.evaluation.suggestions import suggest_cells_to_label
    from omics_vae.schemas.evaluation import SuggestionParams

    table, _ = suggest_cells_to_label(
        ad.read_h5ad(run.embeddings), SuggestionParams(n_cells=n_cells)
    )
    return table["cell_id"].tolist()


def random_cells(model_input: Any, hidden: Any, n_cells: int, seed: int) -> list[str]:
    """``n_cells`` unlabelled training cells drawn uniformly with ``seed``."""
    import numpy as np

    train = (model_input.obs["split"].astype(str) == "train").to_numpy()
    candidates = model_input.obs_names[hidden & train]
    rng = np.random.default_rng(1000 + seed)
    return list(rng.choice(candidates, size=min(n_cells, len(candidates)), replace=False))


def expert_labels(model_input: Any, cells: list[str], label_key: str) -> Any:
    """The true labels of ``cells``, as an expert's ``new_labels.csv``."""
    import pandas as pd

    truth = model_input.obs.loc[cells, label_key].astype(str).to_numpy()
    return pd.DataFrame({"cell_id": cells, "label": truth})


def score(run: iq.Run, model_input: Any, dataset: iq.Dataset, evaluated: Any) -> dict[str, Any]:
    truth = model_input.obs[dataset.label_key].astype(str).to_numpy()
    predicted = iq.load_predictions(run, model_input, dataset)
    test = (model_input.obs["split"].astype(str) == "test").to_numpy()
    hidden_accuracy, hidden_f1 = iq.label_transfer(truth, predicted, evaluated)
    test_accuracy, _ = iq.label_transfer(truth, predicted, test)
    return {
        "dataset": dataset.name,
        "seed": run.seed,
        "strategy": run.extra["strategy"],
        "epochs": run.epochs,
        "hidden_cells_scored": int(evaluated.sum()),
        "hidden_accuracy": round(hidden_accuracy, 4),
        "hidden_macro_f1": round(hidden_f1, 4),
        "test_accuracy": round(test_accuracy, 4),
    }


def benchmark_seed(bench: iq.Bench, seed: int, model_input: Any) -> list[dict[str, Any]]:
    dataset, n_cells = bench.dataset, bench.args.n_cells
    hidden = (model_input.obs[dataset.hidden_key].astype(str) == iq.UNLABELLED).to_numpy()
    first = train_round(bench, seed, "round 1", None)
    picks = {
        "suggested": suggested_cells(first, n_cells),
        "random": random_cells(model_input, hidden, n_cells, seed),
    }
    runs = [first] + [
        train_round(bench, seed, name, expert_labels(model_input, cells, dataset.label_key))
        for name, cells in picks.items()
    ]
    labelled = model_input.obs_names.isin(picks["suggested"] + picks["random"])
    evaluated = hidden & ~labelled
    return [score(run, model_input, dataset, evaluated) for run in runs]


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    table = []
    for strategy in STRATEGIES:
        chosen = [row for row in rows if row["strategy"] == strategy]
        entry = {"strategy": strategy, "seeds": len(chosen)}
        for column in ("hidden_accuracy", "hidden_macro_f1", "test_accuracy"):
            values = [row[column] for row in chosen]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            entry[column] = f"{statistics.mean(values):.3f} ± {spread:.3f}"
        table.append(entry)
    return table


def benchmark_dataset(name: str, args: argparse.Namespace) -> None:
    import anndata as ad

    work = args.work / name
    shutil.rmtree(work, ignore_errors=True)
    dataset = iq.prepare_dataset(name, work, args)
    project = iq.copy_project_for(work / "project", dataset, args.threads)
    bench = iq.Bench(dataset, project, work, args)
    iq.process(bench)
    model_input = ad.read_h5ad(bench.model_input)
    rows = [row for seed in args.seeds for row in benchmark_seed(bench, seed, model_input)]
    stem = RESULTS / f"active_learning_{name}"
    write_csv(stem.with_suffix(".csv"), rows)
    facts = machine_facts()
    report = [
        f"# Active learning on {name}: {args.n_cells} suggested vs random labels",
        "",
        f"Data: {dataset.description}; hidden: {dataset.hidden}.",
        f"Machine: {facts.get('cpu', '')}; command: `python benchmarks/active_learning.py "
        f"--data {name} --seeds {' '.join(map(str, args.seeds))} --n-cells {args.n_cells}`.",
        "",
        markdown_table(summary(rows)),
        "",
        markdown_table(rows),
    ]
    stem.with_suffix(".md").write_text("\n".join(report) + "\n")
    print(markdown_table(summary(rows)), flush=True)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", choices=iq.DATASETS, default=list(iq.DATASETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-cells", type=int, default=30, help="cells labelled per strategy")
    parser.add_argument("--epochs", default="auto", help="max epochs; auto: the project's rule")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pbmc", type=Path, default=iq.SHARED_PBMC)
    parser.add_argument("--sim-batch-effect-sd", type=float, default=0.8)
    parser.add_argument("--sim-cells", type=int, default=3000)
    parser.add_argument("--sim-genes", type=int, default=2000)
    parser.add_argument("--sim-batches", type=int, default=3)
    parser.add_argument("--sim-cell-types", type=int, default=6)
    parser.add_argument("--sim-seed", type=int, default=0)
    parser.add_argument("--hide-fraction", type=float, default=0.5)
    parser.add_argument("--hide-seed", type=int, default=0)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/omics-vae-active-learning"))
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--max-busy", type=float, default=0.5)
    parser.add_argument("--max-wait", type=float, default=5.0)
    args = parser.parse_args(argv)
    for name in args.data:
        benchmark_dataset(name, args)


if __name__ == "__main__":
    main()
