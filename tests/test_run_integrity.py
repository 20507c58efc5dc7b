"""Through Kedro sessions, as `kedro run` makes them: a dry run writes nothing, and a run
that fails part-way through a stage leaves no half set of outputs as the latest versions."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DatasetError

from omics_vae.training.fitting import TrainingDryRun
from tests.conftest import use_small_simulated_counts
from tests.kedro_session import run_in_process
from tests.short_run import short_run_project

pytestmark = pytest.mark.e2e


def _tree_digest(*paths: Path) -> str:
    """A hash of every file's name and content under ``paths``."""
    digest = hashlib.blake2b()
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory) -> Path:
    return short_run_project(tmp_path_factory)


@pytest.mark.parametrize("pipelines", [(), ("training",)], ids=["kedro run", "training only"])
def test_a_dry_run_prints_the_plan_and_leaves_data_and_the_store_unchanged(
    trained_project, pipelines, capsys
):
    before = _tree_digest(trained_project / "data", trained_project / "mlflow.db")

    # In this process (the hooks are under test, not the command line): a dry run ends
    # the run as `kedro run` would, with exit status 0.
    with pytest.raises(TrainingDryRun) as ended:
        run_in_process(trained_project, *pipelines, params={"training.dry_run": True})

    assert ended.value.code in (None, 0)
    printed = capsys.readouterr().out
    assert "training.dry_run: the plan above is valid; nothing was trained." in printed
    assert "No training.phases: one phase with the plain settings." in printed
    assert _tree_digest(trained_project / "data", trained_project / "mlflow.db") == before


def test_a_failed_processing_run_leaves_the_previous_complete_set_as_latest(project_copy, caplog):
    # QC thresholds for 300 genes: the default ones keep too few cells for a training batch.
    use_small_simulated_counts(
        project_copy,
        {"hvg": {"n_top_genes": 200}, "qc": {"min_genes_per_cell": 20, "min_counts_per_cell": 50}},
    )
    local = project_copy / "conf" / "local"
    run_in_process(project_copy, "data_processing")
    reports = project_copy / "data" / "08_reporting"
    first = sorted((reports / "qc_summary.csv").glob("*/qc_summary.csv"))
    assert len(first) == 1

    # The second run saves its QC summary, then cannot save model_input: a file stands
    # where its folder would be.
    (project_copy / "data" / "05_model_input" / "blocked").write_text("")
    catalog = (local / "catalog.yml").read_text()
    (local / "catalog.yml").write_text(
        catalog
        + "model_input:\n  type: omics_vae.datasets.H5ADDataset\n"
        + "  filepath: data/05_model_input/blocked/model_input.h5ad\n  versioned: true\n"
    )
    # The session's logging setup replaces the root logger's handlers: listen on the
    # project's logger itself.
    project_logger = logging.getLogger("omics_vae")
    project_logger.addHandler(caplog.handler)
    try:
        with pytest.raises(DatasetError, match="model_input"):
            run_in_process(project_copy, "data_processing")
    finally:
        project_logger.removeHandler(caplog.handler)

    assert ".incomplete-run" in caplog.text  # the log says what was set aside
    assert sorted((reports / "qc_summary.csv").glob("*/qc_summary.csv")) == first
    assert len(list((reports / "qc_metrics.png").glob("*/qc_metrics.png"))) == 1
    set_aside = list((reports / "qc_summary.csv").glob("*/qc_summary.csv.incomplete-run"))
    assert len(set_aside) == 1
    assert set_aside[0].parent != first[0].parent
    pd.read_csv(set_aside[0])  # kept whole, only renamed
