"""The evaluated cells: embeddings checked against the processed data, cells selected and
subsampled, baselines added."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import numpy as np
import pandas as pd
import pytest
import yaml

from omics_vae.evaluation.cells import EvaluationInputError
from omics_vae.evaluation.preparation import prepare_evaluation_cells

from .conftest import N_CELLS, PROJECT_ROOT, validated


class TestPrepareEvaluationCells:
    def test_holds_the_latents_and_a_pca_baseline(self, evaluation_cells, embeddings, caplog):
        cells = evaluation_cells

        assert cells.n_obs == N_CELLS
        assert cells.n_vars == 0
        np.testing.assert_array_equal(cells.obsm["X_invae"], embeddings.obsm["X_invae"])
        assert cells.obsm["X_pca"].shape == (N_CELLS, 30)
        assert cells.uns["evaluation"]["embeddings"] == {"invae": "X_invae", "pca": "X_pca"}
        assert cells.obs["in_subsample"].all()

    def test_harmony_is_benchmarked_beside_pca_by_default(
        self, embeddings, model_input, parameters
    ):
        committed = yaml.safe_load(
            (PROJECT_ROOT / "conf/base/parameters_evaluation.yml").read_text()
        )
        assert committed["evaluation"]["baselines"]["harmony"] is True
        parameters["baselines"]["harmony"] = True

        cells = prepare_evaluation_cells(embeddings, model_input, validated(parameters))

        assert cells.uns["evaluation"]["embeddings"]["harmony"] == "X_harmony"
        harmony = cells.obsm["X_harmony"]
        assert harmony.shape == cells.obsm["X_pca"].shape
        assert np.isfinite(harmony).all()
        assert not np.allclose(harmony, cells.obsm["X_pca"])

    @pytest.mark.parametrize("components_first", [True, False])
    def test_harmony_runs_when_installed_whatever_its_output_orientation(
        self, embeddings, model_input, parameters, monkeypatch, components_first
    ):
        """harmonypy < 0.1 returns components x cells, later versions cells x components."""
        calls = []

        def run_harmony(data, meta, keys, random_state):
            calls.append((data.shape, list(meta.columns), keys, random_state))
            corrected = (
                data
                - pd.DataFrame(data).groupby(meta[keys[0]].to_numpy()).transform("mean").to_numpy()
            )
            return types.SimpleNamespace(Z_corr=corrected.T if components_first else corrected)

        fake = types.ModuleType("harmonypy")
        fake.__spec__ = importlib.machinery.ModuleSpec("harmonypy", None)
        fake.run_harmony = run_harmony
        monkeypatch.setitem(sys.modules, "harmonypy", fake)
        parameters["baselines"]["harmony"] = True

        cells = prepare_evaluation_cells(embeddings, model_input, validated(parameters))

        assert calls == [((N_CELLS, 30), ["batch"], ["batch"], 0)]
        assert cells.uns["evaluation"]["embeddings"]["harmony"] == "X_harmony"
        harmony = cells.obsm["X_harmony"]
        assert harmony.shape == (N_CELLS, 30)
        batch_means = pd.DataFrame(harmony).groupby(cells.obs["batch"].to_numpy()).mean()
        np.testing.assert_allclose(batch_means.to_numpy(), 0, atol=1e-4)

    def test_cells_in_another_order_are_aligned(self, embeddings, model_input, parameters):
        shuffled = model_input[np.random.default_rng(0).permutation(N_CELLS)].copy()

        aligned = prepare_evaluation_cells(embeddings, shuffled, validated(parameters))
        reference = prepare_evaluation_cells(embeddings, model_input, validated(parameters))

        # The PCA is fitted on the same cells in the embedding's order: the same baseline.
        np.testing.assert_allclose(
            np.abs(aligned.obsm["X_pca"][:, :3]), np.abs(reference.obsm["X_pca"][:, :3]), atol=1e-4
        )

    def test_cells_of_another_data_version_are_refused_with_the_fix(
        self, embeddings, model_input, parameters
    ):
        other_version = model_input[20:].copy()

        with pytest.raises(EvaluationInputError) as error:
            prepare_evaluation_cells(embeddings, other_version, validated(parameters))

        message = str(error.value)
        assert "another version of the processed data" in message
        assert "20 embedded cells are not in model_input" in message
        assert "kedro run --pipelines embedding" in message
        assert "--load-versions model_input:" in message

    @pytest.mark.parametrize(("field", "key"), [("batch_key", "sample"), ("cell_type_key", "ct")])
    def test_an_obs_key_missing_from_the_embeddings_is_named(
        self, embeddings, model_input, parameters, field, key
    ):
        embeddings.uns["embedding"][field] = key

        with pytest.raises(EvaluationInputError) as error:
            prepare_evaluation_cells(embeddings, model_input, validated(parameters))

        message = str(error.value)
        assert f"uns['embedding']['{field}'] names obs['{key}']" in message
        assert "'batch', 'cell_type', 'reconstruction_error', 'split'" in message

    def test_a_latent_missing_from_obsm_is_named(self, embeddings, model_input, parameters):
        del embeddings.obsm["X_invae_technical"]

        with pytest.raises(EvaluationInputError, match=r"obsm\['X_invae_technical'\], absent"):
            prepare_evaluation_cells(embeddings, model_input, validated(parameters))

    def test_a_diverged_latent_is_refused(self, embeddings, model_input, parameters):
        embeddings.obsm["X_invae"][5, 0] = np.nan

        with pytest.raises(EvaluationInputError, match="non-finite values in 1 cells"):
            prepare_evaluation_cells(embeddings, model_input, validated(parameters))

    def test_splits_select_cells(self, embeddings, model_input, parameters):
        parameters["splits"] = ["test"]

        cells = prepare_evaluation_cells(embeddings, model_input, validated(parameters))

        assert cells.n_obs == int((embeddings.obs["split"] == "test").sum())
        assert set(cells.obs["split"]) == {"test"}

    def test_an_unknown_split_is_refused(self, embeddings, model_input, parameters):
        parameters["splits"] = ["holdout"]

        with pytest.raises(EvaluationInputError, match=r"\['holdout'\].*splits present"):
            prepare_evaluation_cells(embeddings, model_input, validated(parameters))

    def test_subsample_is_stratified_seeded_and_keeps_every_group(
        self, embeddings, model_input, parameters
    ):
        parameters["max_cells"] = 150

        first = prepare_evaluation_cells(embeddings, model_input, validated(parameters))
        second = prepare_evaluation_cells(embeddings, model_input, validated(parameters))

        kept = first.obs[first.obs["in_subsample"]]
        assert first.n_obs == N_CELLS  # statistics and anomalies keep every cell
        # Half of each batch x cell type group of 33 or 34 cells.
        sizes = kept.groupby(["batch", "cell_type"], observed=True).size()
        assert len(sizes) == 9
        assert sizes.between(16, 17).all()
        assert 140 <= len(kept) <= 150
        np.testing.assert_array_equal(first.obs["in_subsample"], second.obs["in_subsample"])
