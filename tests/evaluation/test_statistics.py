"""Latent dimensions vs batch and cell type: η², Kruskal-Wallis and q-values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.anova import anova_lm

from omics_vae.evaluation.preparation import prepare_evaluation_cells
from omics_vae.evaluation.statistics import compute_latent_association, eta_squared

from .conftest import BATCH_DIMS, TYPE_DIMS, validated


class TestLatentAssociation:
    def test_z_i_carries_cell_type_and_z_s_carries_batch(self, evaluation_cells):
        table = compute_latent_association(evaluation_cells)

        assert list(table.columns) == [
            "latent", "dimension", "covariate", "obs_key", "n_groups",
            "eta_squared", "kruskal_h", "p_value", "q_value",
        ]  # fmt: skip
        assert len(table) == (8 + 4) * 2
        eta = table.set_index(["latent", "covariate", "dimension"])["eta_squared"]
        q = table.set_index(["latent", "covariate", "dimension"])["q_value"]
        for dim in TYPE_DIMS:
            assert eta["z_i", "cell_type", dim] > 0.6
            assert eta["z_i", "batch", dim] < 0.05
            assert q["z_i", "cell_type", dim] < 1e-10
        for dim in BATCH_DIMS:
            assert eta["z_s", "batch", dim] > 0.6
            assert eta["z_s", "cell_type", dim] < 0.05
            assert q["z_s", "batch", dim] < 1e-10
        noise = table[(table["latent"] == "z_i") & ~table["dimension"].isin(TYPE_DIMS)]
        assert (noise["eta_squared"] < 0.05).all()
        assert (table["q_value"] >= table["p_value"]).all()

    def test_eta_squared_is_the_one_way_anova_share_of_variance(self, evaluation_cells):
        latent = evaluation_cells.obsm["X_invae"].astype(np.float64)
        groups = evaluation_cells.obs["cell_type"].astype(str).to_numpy()
        frame = pd.DataFrame({"value": latent[:, 0], "group": groups})

        anova = anova_lm(smf.ols("value ~ C(group)", data=frame).fit())
        expected = anova.loc["C(group)", "sum_sq"] / anova["sum_sq"].sum()

        computed = eta_squared(latent, pd.factorize(groups)[0])
        assert computed[0] == pytest.approx(expected, rel=1e-9)

    def test_kruskal_wallis_matches_scipy_per_dimension(self, evaluation_cells):
        table = compute_latent_association(evaluation_cells)
        latent = evaluation_cells.obsm["X_invae_technical"].astype(np.float64)
        batches = evaluation_cells.obs["batch"].to_numpy()

        expected = stats.kruskal(*(latent[batches == b, 3] for b in ("b0", "b1", "b2")))

        row = table.query("latent == 'z_s' and covariate == 'batch' and dimension == 3").iloc[0]
        assert row["kruskal_h"] == pytest.approx(expected.statistic)
        assert row["p_value"] == pytest.approx(expected.pvalue)

    def test_a_model_without_technical_latent_has_one_latent_z(
        self, embeddings, model_input, parameters
    ):
        del embeddings.obsm["X_invae_technical"]
        embeddings.uns["embedding"].update(model="scvi_vae", technical_key=None)
        cells = prepare_evaluation_cells(embeddings, model_input, validated(parameters))

        table = compute_latent_association(cells)

        assert set(table["latent"]) == {"z"}
        assert len(table) == 8 * 2
