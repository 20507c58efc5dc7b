"""Paired-table library: reading, alignment, cleaning, transforms, scalers, tensors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from tests.printed_fixes import apply, printed_settings
from tests.tiny_training import PROJECT_ROOT

from omics_vae.data import paired
from omics_vae.data.paired import FeatureScaler, PairedInputError, PairedTensors
from omics_vae.data.paired_simulate import simulate_paired_tables
from omics_vae.data.tensors import InMemoryBatchLoader


def _table(ids, values, columns=("f1", "f2")):
    table = pd.DataFrame(values, columns=list(columns))
    table.insert(0, "sample_id", ids)
    return table


def test_table_is_indexed_by_sample_id_and_transposed_on_request():
    frame = paired.table_to_frame(_table(["s1", "s2"], [[1, 2], [3, 4]]), "platform_a_raw")
    assert list(frame.index) == ["s1", "s2"]
    assert frame.loc["s2", "f1"] == 3
    rows = pd.DataFrame({"feature": ["f1", "f2"], "s1": [1.0, 2.0], "s2": [3.0, 4.0]})
    transposed = paired.table_to_frame(rows, "platform_a_raw", transpose=True)
    assert transposed.loc["s2", "f2"] == 4.0


def test_repeated_ids_are_refused_naming_them_and_the_file():
    table = _table(["s1", "s2", "s1"], [[1, 2], [3, 4], [5, 6]])
    with pytest.raises(PairedInputError, match=r"platform_a_raw.*not unique.*'s1'"):
        paired.table_to_frame(table, "platform_a_raw")


def test_a_non_numeric_feature_column_is_refused_naming_it():
    table = _table(["s1", "s2"], [[1, "x"], [3, "4"]])
    with pytest.raises(PairedInputError, match=r"platform_b_raw.*'f2'.*non-numeric"):
        paired.table_to_frame(table, "platform_b_raw")


def test_alignment_keeps_shared_samples_and_reports_the_others():
    a = pd.DataFrame({"x": [1.0, 2.0, 3.0]}, index=["s1", "s2", "s3"])
    b = pd.DataFrame({"y": [5.0, 6.0, 7.0]}, index=["s4", "s2", "s1"])
    aligned_a, aligned_b, report = paired.align_samples(a, b, ("rna", "protein"))
    assert list(aligned_a.index) == list(aligned_b.index) == ["s1", "s2"]
    assert aligned_b.loc["s1", "y"] == 7.0
    assert report.set_index("sample_id")["present_in"].to_dict() == {"s3": "rna", "s4": "protein"}


def test_tables_without_a_shared_id_are_refused():
    a = pd.DataFrame({"x": [1.0]}, index=["s1"])
    b = pd.DataFrame({"y": [1.0]}, index=["S1"])
    with pytest.raises(PairedInputError, match="No sample ID is in both rna"):
        paired.align_samples(a, b, ("rna", "protein"))


def test_mostly_missing_features_are_dropped_and_all_dropped_is_an_error():
    frame = pd.DataFrame({"ok": [1.0, np.nan, 3.0, 4.0], "bad": [np.nan, np.nan, np.nan, 1.0]})
    kept, dropped = paired.drop_sparse_features(frame, 0.5, "rna")
    assert list(kept.columns) == ["ok"]
    assert dropped == ["bad"]
    setting = "paired.processing.platform_a.max_missing_fraction"
    with pytest.raises(PairedInputError, match=r"rna: all 2 features") as refused:
        paired.drop_sparse_features(frame, 0.1, "rna", setting=setting)

    # The printed fix is a key that works, with a value that keeps a feature.
    fix = printed_settings(str(refused.value))
    assert fix == {setting: 0.25}
    base = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_paired.yml").read_text())
    blocks = apply(fix, base)
    limit = blocks["paired"]["processing"]["platform_a"]["max_missing_fraction"]
    kept, _ = paired.drop_sparse_features(frame, limit, "rna", setting=setting)
    assert list(kept.columns) == ["ok"]


@pytest.mark.parametrize("method", ["mean", "median", "knn"])
def test_imputation_is_fitted_on_training_samples_only(method):
    frame = pd.DataFrame({"x": [1.0, 1.0, np.nan, 100.0], "y": [1.0, 1.0, 1.0, 1.0]})
    train = np.array([True, True, True, False])
    filled = paired.impute_missing(frame, train, method, n_neighbors=2)
    assert filled.loc[2, "x"] == pytest.approx(1.0)  # the held-out 100 is never used
    assert not filled.isna().to_numpy().any()


@pytest.mark.parametrize(("method", "offset"), [("log1p", 1.0), ("log2", 0.5), ("none", 1.0)])
def test_log_transforms_invert(method, offset):
    values = np.array([[0.0, 1.0, 250.0]])
    back = paired.inverse_log_transform(
        paired.log_transform(values, method, offset), method, offset
    )
    np.testing.assert_allclose(back, values, atol=1e-9)


def test_library_normalisation_and_top_variable_features_use_training_samples():
    values = np.array([[1.0, 3.0], [2.0, 2.0]])
    np.testing.assert_allclose(paired.normalize_library(values, 100.0).sum(axis=1), [100, 100])
    data = np.array([[0.0, 0.0, 0.0], [1.0, 5.0, 0.1], [9.0, 9.0, 9.0]])
    train = np.array([True, True, False])
    assert list(paired.top_variable_features(data, train, 2)) == [0, 1]


@pytest.mark.parametrize("method", ["zscore", "minmax", "robust", "none"])
def test_scaler_round_trips_through_json(method):
    rng = np.random.default_rng(0)
    values = rng.lognormal(size=(40, 3))
    values[:, 2] = 7.0  # a constant feature keeps a scale of 1
    scaler = FeatureScaler.fit(values[:30], ["a", "b", "c"], method)
    restored = FeatureScaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert restored == scaler
    np.testing.assert_allclose(restored.inverse_transform(scaler.transform(values)), values)
    if method == "zscore":
        np.testing.assert_allclose(scaler.transform(values[:30])[:, :2].mean(axis=0), 0, atol=1e-9)


def test_a_scaler_for_other_features_is_refused():
    scaler = FeatureScaler.fit(np.ones((3, 2)), ["CD4", "CD8"], "zscore")
    scaler.check_features(["CD4", "CD8"], "paired_scalers")
    with pytest.raises(PairedInputError, match=r"paired_scalers.*'CD8'.*'CD19'"):
        scaler.check_features(["CD4", "CD19"], "paired_scalers")
    with pytest.raises(PairedInputError, match="another order"):
        scaler.check_features(["CD8", "CD4"], "paired_scalers")


def test_simulated_tables_share_most_samples_and_have_missing_values():
    a, b = simulate_paired_tables(n_samples=50, n_features_a=12, n_features_b=5, n_unpaired=3)
    assert a.columns[0] == b.columns[0] == "sample_id"
    assert len(set(a["sample_id"]) & set(b["sample_id"])) == 50
    assert a.shape == (53, 13)
    assert b.shape == (53, 6)
    assert a.iloc[:, 1:].isna().to_numpy().any()
    again, _ = simulate_paired_tables(n_samples=50, n_features_a=12, n_features_b=5, n_unpaired=3)
    pd.testing.assert_frame_equal(a, again)


def test_paired_tensors_feed_the_in_memory_loader():
    tensors = PairedTensors(
        torch.arange(20.0).reshape(10, 2),
        torch.arange(10.0).reshape(10, 1),
        np.array([f"s{i}" for i in range(10)]),
        np.array(["train"] * 7 + ["val"] * 3),
    )
    train = tensors.subset("train")
    assert train.n_obs == 7
    batches = list(InMemoryBatchLoader(train, batch_size=4, seed=0))
    rows = torch.cat([b["x_b"][:, 0] for b in batches]).sort().values
    assert torch.equal(rows, torch.arange(7.0))
    for batch in batches:  # pairs stay together when shuffled
        assert torch.equal(batch["x_a"][:, 0], 2 * batch["x_b"][:, 0])
