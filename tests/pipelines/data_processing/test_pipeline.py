"""Tests of the data-processing pipeline as Kedro runs it, and of its configuration."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset, Version
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import CSVDataset
from matplotlib.figure import Figure

from omics_vae.params import InvalidParametersError, validate_section
from omics_vae.pipelines.data_processing import create_pipeline
from omics_vae.pipelines.data_processing.nodes import filter_cells_and_genes
from omics_vae.processing.annotations import RECORD_KEY
from omics_vae.processing.errors import DataProcessingError
from omics_vae.processing.split import SPLITS
from omics_vae.schemas.data_processing import DataProcessingParams
from tests.conftest import validated_block

PROJECT_ROOT = Path(__file__).resolve().parents[3]
SUCCESS = "Pipeline execution completed successfully"
OUTPUTS = ("model_input", "qc_summary", "qc_figure")
# The pipeline's one parameter from another block: the training batch it must fill.
BATCH_SIZE = "params:training.trainer.batch_size"
IN_MEMORY = (
    "validated_cells",
    "filtered_cells",
    "normalised_cells",
    "annotated_cells",
    "qc_metrics",
)


def make_catalog(parameters: dict[str, Any], batch_size: int = 128, **inputs: Any) -> DataCatalog:
    """An in-memory catalog holding the given inputs, the parameters and empty outputs."""
    datasets = {name: MemoryDataset(data) for name, data in inputs.items()}
    datasets["params:data_processing"] = MemoryDataset(
        validated_block("data_processing", parameters)
    )
    datasets[BATCH_SIZE] = MemoryDataset(batch_size)
    return DataCatalog(datasets=datasets)


def run(pipeline, catalog: DataCatalog, caplog) -> None:
    caplog.set_level(logging.INFO, logger="kedro")
    SequentialRunner().run(pipeline, catalog)
    assert SUCCESS in caplog.text


def base_config(name: str) -> dict[str, Any]:
    loader = OmegaConfigLoader(
        conf_source=str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base"
    )
    return loader[name]


def test_pipeline_interface():
    pipeline = create_pipeline()

    assert pipeline.inputs() == {"raw_counts", "params:data_processing", BATCH_SIZE}
    assert pipeline.outputs() == set(OUTPUTS)
    assert {node.name for node in pipeline.nodes} == {
        "validate_raw_data_node",
        "filter_cells_and_genes_node",
        "normalise_counts_node",
        "select_highly_variable_genes_node",
        "split_cells_node",
        "plot_qc_metrics_node",
    }


def test_full_pipeline_turns_raw_counts_into_model_input(raw_counts, parameters, caplog):
    catalog = make_catalog(parameters, raw_counts=raw_counts)

    run(create_pipeline(), catalog, caplog)

    model_input = catalog.load("model_input")
    assert isinstance(model_input, ad.AnnData)
    assert model_input.n_obs == 279
    assert set(model_input.obs["split"].cat.categories) == set(SPLITS)
    assert model_input.var["highly_variable"].sum() == 50
    assert model_input.layers["counts"].dtype == np.float32
    record = model_input.uns[RECORD_KEY]
    assert record["n_cells_raw"] == 300
    assert record["n_cells_after_qc"] == 279
    assert record["params"] == DataProcessingParams.model_validate(parameters).model_dump(
        mode="json"
    )
    summary = catalog.load("qc_summary")
    assert isinstance(summary, pd.DataFrame)
    assert summary.iloc[-1]["n_cells_after"] == 279
    assert isinstance(catalog.load("qc_figure"), Figure)
    # The raw data handed to the pipeline is left as it was.
    assert raw_counts.n_obs == 300
    assert list(raw_counts.obs.columns) == ["batch", "cell_type"]


def test_quality_control_slice_stops_before_normalisation(raw_counts, parameters, caplog):
    pipeline = create_pipeline().to_nodes("filter_cells_and_genes_node")
    catalog = make_catalog(parameters, raw_counts=raw_counts)

    run(pipeline, catalog, caplog)

    assert {node.name for node in pipeline.nodes} == {
        "validate_raw_data_node",
        "filter_cells_and_genes_node",
    }
    filtered = catalog.load("filtered_cells")
    assert "counts" not in filtered.layers
    assert list(catalog.load("qc_summary")["batch"]) == ["batch0", "batch1", "batch2", "total"]


def test_slice_from_filtered_cells_to_model_input(filtered, parameters, caplog):
    pipeline = create_pipeline().from_nodes("normalise_counts_node").to_nodes("split_cells_node")
    catalog = make_catalog(parameters, filtered_cells=filtered)

    run(pipeline, catalog, caplog)

    assert pipeline.inputs() == {"filtered_cells", "params:data_processing"}
    model_input = catalog.load("model_input")
    np.testing.assert_array_equal(model_input.layers["counts"].toarray(), filtered.X.toarray())
    assert model_input.obs["split"].notna().all()


def test_qc_figure_slice_needs_only_the_metrics(validated, parameters, caplog):
    _, metrics, _ = filter_cells_and_genes(
        validated, validated_block("data_processing", parameters)
    )
    pipeline = create_pipeline().from_nodes("plot_qc_metrics_node")
    catalog = make_catalog(parameters, qc_metrics=metrics)

    run(pipeline, catalog, caplog)

    assert len(catalog.load("qc_figure").get_axes()) == 6


def test_failure_names_the_node_input_problem(raw_counts, parameters):
    parameters["batch_key"] = "sample"
    catalog = make_catalog(parameters, raw_counts=raw_counts)

    with pytest.raises(ValueError, match=r"data_processing\.batch_key"):
        SequentialRunner().run(create_pipeline(), catalog)


@pytest.mark.parametrize("refused", ["ten cells", "one cell per batch"])
def test_a_refused_input_saves_no_output(raw_counts, parameters, refused, tmp_path):
    """The input contract is checked before the first output is saved: a refused run
    leaves no QC summary (nor model input) of a processing that never finished."""
    if refused == "ten cells":
        raw, reason = raw_counts[:10].copy(), "training.trainer.batch_size"
    else:
        raw, reason = raw_counts.copy(), "No batch of obs['batch']"
        raw.obs["batch"] = pd.Categorical(raw.obs_names)
        parameters["qc"].update(min_genes_per_cell=0, min_counts_per_cell=0, max_pct_mito=100)
    catalog = make_catalog(parameters, raw_counts=raw)
    catalog["qc_summary"] = CSVDataset(
        filepath=str(tmp_path / "qc_summary.csv"), version=Version(None, None)
    )

    with pytest.raises(DataProcessingError, match=re.escape(reason)):
        SequentialRunner().run(create_pipeline(), catalog)

    assert not list(tmp_path.iterdir())


def test_real_pbmc_data_runs_through(pbmc_3chem_path, parameters, caplog):
    """Three 10x chemistries of real PBMCs, with the project's QC thresholds."""
    parameters.update(batch_key="chemistry", cell_type_key="cell_type")
    parameters["qc"].update(min_genes_per_cell=200, min_counts_per_cell=500)
    parameters["hvg"]["n_top_genes"] = 500
    catalog = make_catalog(parameters, raw_counts=ad.read_h5ad(pbmc_3chem_path))

    run(create_pipeline(), catalog, caplog)

    model_input = catalog.load("model_input")
    assert set(model_input.obs["chemistry"]) == {"3pv1", "3pv2", "5p"}
    assert model_input.var["highly_variable"].sum() == 500
    assert model_input.var["mt"].sum() > 0


class TestConfiguration:
    def test_parameters_file_matches_the_schema(self):
        with (PROJECT_ROOT / "conf/base/parameters_data_processing.yml").open() as stream:
            block = yaml.safe_load(stream)["data_processing"]

        params = DataProcessingParams.model_validate(block)

        assert params.hvg.flavor == "seurat_v3"
        assert params.split.train + params.split.val + params.split.test == pytest.approx(1)

    def test_a_typo_names_the_key(self, parameters):
        parameters["hvg"]["n_top_gene"] = 100

        with pytest.raises(InvalidParametersError, match=r"data_processing\.hvg\.n_top_gene"):
            validate_section("data_processing", DataProcessingParams, parameters)

    def test_catalog_entries_have_layers_and_versions(self):
        catalog = base_config("catalog")

        for name in ("raw_counts", *OUTPUTS, *IN_MEMORY):
            assert catalog[name]["metadata"]["kedro-viz"]["layer"], name
        for name in OUTPUTS:
            assert catalog[name]["versioned"] is True, name

    def test_intermediates_are_passed_by_reference(self):
        """Kedro's default MemoryDataset would copy the data twice per step."""
        config = base_config("catalog")
        catalog = DataCatalog.from_config({name: config[name] for name in IN_MEMORY})
        pipeline = create_pipeline()
        assert pipeline.all_outputs() - pipeline.outputs() == set(IN_MEMORY)

        for name in IN_MEMORY:
            data = ad.AnnData(np.ones((2, 2), dtype=np.float32))
            catalog.save(name, data)
            assert catalog.load(name) is data
