"""Evaluation nodes: the committed parameters, and each node taking its validated block and
handing it to the library (the library's behaviour is tested in tests/evaluation)."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pandas as pd
import pytest

from omics_vae.evaluation import anomalies, figures, integration, preparation, statistics
from omics_vae.params import InvalidParametersError, validate_section
from omics_vae.pipelines.evaluation import nodes
from omics_vae.schemas.evaluation import (
    BATCH_METRICS,
    BIO_METRICS,
    AnomalyParams,
    EvaluationParams,
)
from tests.conftest import validated_block

# ---- parameters -------------------------------------------------------------------------


class TestParameters:
    def test_committed_file_matches_the_schema(self, parameters):
        config = EvaluationParams.model_validate(parameters)

        assert config.splits is None
        assert "kbet_per_label" in config.metrics.batch
        assert config.baselines.n_comps == 30

    def test_metric_names_are_the_fields_of_scib_metrics(self):
        from scib_metrics.benchmark import BatchCorrection, BioConservation

        assert tuple(f.name for f in fields(BioConservation)) == BIO_METRICS
        assert tuple(f.name for f in fields(BatchCorrection)) == BATCH_METRICS

    def test_an_unknown_metric_is_refused_with_the_valid_names(self, parameters):
        parameters["metrics"]["batch"] = ["kbet", "ilisi_knn"]

        with pytest.raises(InvalidParametersError) as error:
            validate_section("evaluation", EvaluationParams, parameters)

        message = str(error.value)
        assert "evaluation.metrics.batch.0" in message
        assert "'kbet'" in message
        for name in BATCH_METRICS:
            assert name in message

    def test_a_typo_names_the_key(self, parameters):
        parameters["anomaly"]["fraktion"] = 0.1

        with pytest.raises(InvalidParametersError, match=r"evaluation\.anomaly\.fraktion"):
            validate_section("evaluation", EvaluationParams, parameters)

    def test_no_metric_at_all_is_refused(self, parameters):
        parameters["metrics"] = {"bio": [], "batch": []}

        with pytest.raises(InvalidParametersError, match="at least one metric"):
            validate_section("evaluation", EvaluationParams, parameters)


# ---- nodes ------------------------------------------------------------------------------


def test_the_preparation_node_gives_the_library_the_validated_block(
    embeddings, model_input, parameters
):
    parameters["splits"] = ["test"]

    from_node = nodes.prepare_evaluation_cells(
        embeddings, model_input, validated_block("evaluation", parameters)
    )
    from_library = preparation.prepare_evaluation_cells(
        embeddings, model_input, EvaluationParams.model_validate(parameters)
    )

    assert from_node.uns == from_library.uns
    pd.testing.assert_frame_equal(from_node.obs, from_library.obs)
    for key in from_library.obsm:
        np.testing.assert_array_equal(from_node.obsm[key], from_library.obsm[key])


def test_the_anomaly_nodes_use_the_anomaly_block(evaluation_cells, parameters):
    parameters["anomaly"].update(method="knn", combine="zscore", fraction=0.1)
    config = AnomalyParams.model_validate(parameters["anomaly"])

    block = validated_block("evaluation", parameters)
    scores = nodes.score_anomalies(evaluation_cells, block)

    pd.testing.assert_frame_equal(scores, anomalies.score_anomalies(evaluation_cells, config))
    assert scores["flagged"].sum() == 30
    umaps = scores[["cell", "batch", "cell_type"]].assign(
        embedding="invae", role="model", umap_1=0.0, umap_2=0.0
    )
    title = nodes.plot_anomalies(umaps, scores, block).get_axes()[0].get_title()
    assert "top 10.0% flagged" in title
    assert "knn on the latent" in title


def test_nodes_without_parameters_are_the_library_functions():
    assert nodes.scib_results_to_metrics is integration.scib_results_to_metrics
    assert nodes.compute_latent_association is statistics.compute_latent_association
    assert nodes.plot_umaps is figures.plot_umaps
    assert nodes.plot_latent_association is figures.plot_latent_association
