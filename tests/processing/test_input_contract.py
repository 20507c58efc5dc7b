"""The input contract of the processing, checked before any work: labels for every cell,
counts stored as numbers, cells enough for the split and a training batch. Each refusal
names the data, the key and a fix, and the fix it prints works."""

from __future__ import annotations

import itertools
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml

from omics_vae.processing.errors import (
    LOCAL_PARAMETERS_FILE,
    LOCAL_TRAINING_PARAMETERS_FILE,
    DataProcessingError,
)
from omics_vae.processing.hvg import select_highly_variable_genes
from omics_vae.processing.normalisation import normalise_counts
from omics_vae.processing.qc import filter_cells_and_genes
from omics_vae.processing.split import (
    SPLITS,
    check_cells_suffice,
    planned_split_sizes,
    split_cells,
)
from omics_vae.processing.validation import validate_raw_data
from omics_vae.schemas.data_processing import SplitParams
from tests.printed_fixes import apply, printed_settings
from tests.processing.simulated_counts import as_params

# The committed training batch size, which the data must fill.
BATCH_SIZE = 128


def process(raw: ad.AnnData, parameters: dict[str, Any], batch_size: int | None) -> ad.AnnData:
    """Every processing step, as the pipeline chains them."""
    params = as_params(parameters)
    validated = validate_raw_data(raw, params, batch_size)
    filtered, _, _ = filter_cells_and_genes(validated, params, batch_size)
    normalised = normalise_counts(filtered, params.normalisation.target_sum)
    return split_cells(select_highly_variable_genes(normalised, params), params)


class TestMissingCellTypes:
    def test_cells_without_a_label_are_kept_as_unlabelled_cells(
        self, raw_counts, parameters, caplog
    ):
        labels = raw_counts.obs["cell_type"].astype(object)
        labels.iloc[[3, 50, 70]] = np.nan
        raw_counts.obs["cell_type"] = labels

        with caplog.at_level("INFO", logger="omics_vae.processing.validation"):
            model_input = process(raw_counts, parameters, BATCH_SIZE)

        assert "no cell type for 3 of 300 cells (e.g. ['cell3', 'cell50', 'cell70'])" in (
            caplog.text
        )
        assert "kept as unlabelled cells" in caplog.text
        unlabelled = model_input.obs["cell_type"].isna()
        assert set(model_input.obs_names[unlabelled]) <= {"cell3", "cell50", "cell70"}
        assert set(model_input.obs["split"]) == set(SPLITS)

    def test_an_empty_label_column_is_refused(self, raw_counts, parameters):
        raw_counts.obs["cell_type"] = pd.Categorical([np.nan] * raw_counts.n_obs)

        with pytest.raises(DataProcessingError, match="for 300 of 300 cells"):
            validate_raw_data(raw_counts, as_params(parameters))

    def test_the_printed_fix_processes_the_data_without_labels(self, raw_counts, parameters):
        raw_counts.obs["cell_type"] = pd.Categorical([np.nan] * raw_counts.n_obs)
        with pytest.raises(DataProcessingError) as refused:
            validate_raw_data(raw_counts, as_params(parameters))
        settings = printed_settings(str(refused.value))
        assert settings == {"data_processing.cell_type_key": None}

        fixed = apply(settings, {"data_processing": parameters})["data_processing"]
        model_input = process(raw_counts, fixed, BATCH_SIZE)

        assert model_input.uns["data_processing"]["params"]["cell_type_key"] is None
        assert set(model_input.obs["split"]) == set(SPLITS)


class TestCellsEnoughForTheSplitAndABatch:
    def test_a_ten_cell_file_is_refused_before_any_work(self, raw_counts, parameters):
        ten_cells = raw_counts[:10].copy()

        with pytest.raises(DataProcessingError) as refused:
            validate_raw_data(ten_cells, as_params(parameters), BATCH_SIZE)

        message = str(refused.value)
        assert message.startswith("raw_counts has 10 cells: data_processing.split (train 0.8")
        assert "would give train 8, val 1, test 1 cells" in message
        assert "8 training cells, fewer than training.trainer.batch_size = 128" in message
        assert (
            f"set training.trainer.batch_size: 8 (or lower) in {LOCAL_TRAINING_PARAMETERS_FILE}"
            in message
        )
        assert "use at least 160 cells" in message

    def test_the_printed_batch_size_processes_the_ten_cells(self, raw_counts, parameters):
        ten_cells = raw_counts[40:50].copy()  # past the simulated low-quality cells
        parameters["qc"].update(min_genes_per_cell=0, min_counts_per_cell=0, min_cells_per_gene=0)
        parameters["hvg"]["flavor"] = "seurat"
        with pytest.raises(DataProcessingError) as refused:
            validate_raw_data(ten_cells, as_params(parameters), BATCH_SIZE)
        settings = printed_settings(str(refused.value))
        assert settings == {"training.trainer.batch_size": 8}

        blocks = apply(settings, {"data_processing": parameters, "training": {}})
        model_input = process(ten_cells, parameters, blocks["training"]["trainer"]["batch_size"])

        assert (model_input.obs["split"] == "train").sum() == 8

    def test_the_printed_number_of_cells_is_the_fewest_that_pass(self, raw_counts, parameters):
        with pytest.raises(DataProcessingError, match="use at least 160 cells"):
            validate_raw_data(raw_counts[:159].copy(), as_params(parameters), BATCH_SIZE)

        assert validate_raw_data(raw_counts[:160].copy(), as_params(parameters), BATCH_SIZE)

    def test_too_few_cells_for_the_val_and_test_sets_are_refused(self, raw_counts, parameters):
        with pytest.raises(DataProcessingError) as refused:
            validate_raw_data(raw_counts[:2].copy(), as_params(parameters))

        message = str(refused.value)
        assert "would give train 1, val 0, test 1 cells, so no cell in the val set" in message
        assert "use at least 6 cells" in message
        assert validate_raw_data(raw_counts[:6].copy(), as_params(parameters)).n_obs == 6
        with pytest.raises(DataProcessingError, match="no cell in the val set"):
            validate_raw_data(raw_counts[:5].copy(), as_params(parameters))

    def test_quality_control_that_leaves_too_few_cells_is_refused_before_the_summary(
        self, validated, parameters
    ):
        parameters["qc"]["min_counts_per_cell"] = 400  # keeps 145 cells

        with pytest.raises(DataProcessingError) as refused:
            filter_cells_and_genes(validated, as_params(parameters), BATCH_SIZE)

        message = str(refused.value)
        assert message.startswith("Quality control keeps ")
        assert "of the 300 cells of raw_counts" in message
        assert "fewer than training.trainer.batch_size = 128" in message
        assert f"relax the data_processing.qc thresholds in {LOCAL_PARAMETERS_FILE}" in message
        assert "qc.min_counts_per_cell = 400 removes" in message

    def test_without_a_batch_size_only_the_split_is_checked(self, raw_counts, parameters):
        assert validate_raw_data(raw_counts[:10].copy(), as_params(parameters)).n_obs == 10


class TestPlannedSplitSizes:
    @pytest.mark.parametrize(
        "fractions",
        [(0.8, 0.1, 0.1), (0.7, 0.2, 0.1), (0.6, 0.3, 0.1), (0.9, 0.1, 0.0), (0.9, 0.0, 0.1)],
    )
    def test_match_the_split_made(self, fractions, parameters):
        parameters["split"].update(dict(zip(SPLITS, fractions, strict=True)))
        params = as_params(parameters)
        for n_cells in itertools.chain(range(3, 40), (97, 250, 1001)):
            obs = pd.DataFrame(
                {"batch": pd.Categorical(["b"] * n_cells), "cell_type": ["t"] * n_cells},
                index=[f"c{i}" for i in range(n_cells)],
            )
            planned = planned_split_sizes(n_cells, params.split)
            try:
                made = split_cells(ad.AnnData(obs=obs), params).obs["split"].value_counts()
            except DataProcessingError:
                # The split is impossible exactly when a split would get no cell.
                assert any(planned[s] == 0 and getattr(params.split, s) > 0 for s in SPLITS)
                continue
            assert planned == {s: int(made.get(s, 0)) for s in SPLITS}, n_cells

    def test_a_split_without_held_out_cells_keeps_every_cell_in_train(self):
        split = SplitParams.model_validate({"train": 0.999999999, "val": 0.0, "test": 0.0})

        assert planned_split_sizes(5, split) == {"train": 5, "val": 0, "test": 0}

    def test_the_check_passes_data_that_can_be_split(self, parameters):
        check_cells_suffice(1_000, as_params(parameters), BATCH_SIZE, "1,000 cells")


def test_the_settings_a_message_prints_are_read_as_yaml():
    message = (
        "set training.trainer.batch_size: 8 (or lower), data_processing.cell_type_key: null, "
        "training.covariates.bio: [] or data_processing.hvg.flavor: seurat."
    )

    assert printed_settings(message) == {
        "training.trainer.batch_size": 8,
        "data_processing.cell_type_key": None,
        "training.covariates.bio": [],
        "data_processing.hvg.flavor": "seurat",
    }
    assert yaml.safe_dump(printed_settings("training.trainer.batch_size: 1.0e-3")) == (
        "training.trainer.batch_size: 0.001\n"
    )
