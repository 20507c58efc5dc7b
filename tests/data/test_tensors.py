"""Tests of omics_vae.data.tensors: covariate encoding, tensors and the batch loader."""

from __future__ import annotations

import json
import os

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from omics_vae.data.tensors import (
    BATCH_KEYS,
    COUNT_HISTOGRAM_BINS,
    COUNT_KEYS_KEY,
    COUNTS_KEY,
    CountsTensors,
    CovariateEncoder,
    InMemoryBatchLoader,
    UnknownCategoryError,
    batch_bounds,
    choose_counts_format,
    default_max_dense_bytes,
    plan_placement,
)


def make_adata(n_cells: int = 60, n_genes: int = 12, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    counts = rng.negative_binomial(2, 0.4, size=(n_cells, n_genes)).astype(np.float32)
    counts[:, 0] += 1  # every cell has counts
    obs = pd.DataFrame(
        {
            "batch": pd.Categorical(rng.choice(["b2", "b1"], n_cells), categories=["b2", "b1"]),
            "cell_type": rng.choice(["t1", "t2", "t3"], n_cells),
            "donor": rng.integers(0, 2, n_cells),
            "split": rng.choice(["train", "val"], n_cells, p=[0.7, 0.3]),
        },
        index=[f"cell{i}" for i in range(n_cells)],
    )
    adata = ad.AnnData(X=np.log1p(counts), obs=obs)
    adata.layers["counts"] = sp.csr_matrix(counts)
    return adata


def indexed_tensors(n_cells: int) -> CountsTensors:
    """Tensors whose first count column is the cell's row number (to track the order)."""
    counts = np.ones((n_cells, 3), dtype=np.float32)
    counts[:, 0] = np.arange(n_cells)
    obs = pd.DataFrame({"batch": ["a"] * n_cells}, index=[str(i) for i in range(n_cells)])
    return CountsTensors.from_anndata(ad.AnnData(X=counts, obs=obs), None, tech_keys=["batch"])


def epoch_ids(batches: list[dict[str, torch.Tensor]]) -> list[int]:
    return [int(i) for batch in batches for i in batch["counts"][:, 0]]


# ---- CovariateEncoder ---------------------------------------------------------------


def test_encoder_keeps_categorical_order_and_sorts_other_columns():
    adata = make_adata()
    encoder = CovariateEncoder.fit(adata.obs, ["batch", "cell_type", "donor"])
    assert encoder.categories == {
        "batch": ["b2", "b1"],
        "cell_type": ["t1", "t2", "t3"],
        "donor": ["0", "1"],
    }
    assert encoder.block_sizes == [2, 3, 2]
    assert encoder.n_columns == 7


def test_encoder_round_trips_through_json_and_encodes_identically():
    adata = make_adata()
    encoder = CovariateEncoder.fit(adata.obs, ["batch", "cell_type"])
    restored = CovariateEncoder.from_dict(json.loads(json.dumps(encoder.to_dict())))
    assert restored == encoder
    one_hot = restored.one_hot(adata.obs)
    assert one_hot.dtype == np.float32
    assert one_hot.shape == (adata.n_obs, 5)
    np.testing.assert_array_equal(one_hot.sum(axis=1), 2.0)
    codes = restored.codes(adata.obs)
    expected_batch = np.where(adata.obs["batch"].astype(str) == "b2", 0, 1)
    np.testing.assert_array_equal(codes[:, 0], expected_batch)
    np.testing.assert_array_equal(one_hot[np.arange(adata.n_obs), codes[:, 0]], 1.0)


def test_encoder_encodes_new_data_with_the_stored_order():
    encoder = CovariateEncoder.from_dict({"batch": ["x", "y", "z"]})
    new_obs = pd.DataFrame({"batch": ["z", "x"]})
    np.testing.assert_array_equal(encoder.one_hot(new_obs), [[0, 0, 1], [1, 0, 0]])


def test_unknown_category_error_names_key_and_value():
    encoder = CovariateEncoder.from_dict({"batch": ["b1", "b2"]})
    with pytest.raises(UnknownCategoryError, match=r"obs\['batch'\] has value 'b9'"):
        encoder.one_hot(pd.DataFrame({"batch": ["b1", "b9"]}))


def test_missing_key_and_missing_values_are_reported():
    obs = pd.DataFrame({"batch": ["a", None]})
    with pytest.raises(KeyError, match="no column 'donor'"):
        CovariateEncoder.fit(obs, ["donor"])
    # A missing value is no category (an unknown label) but cannot be encoded strictly.
    encoder = CovariateEncoder.fit(obs, ["batch"])
    assert encoder.categories == {"batch": ["a"]}
    with pytest.raises(ValueError, match=r"obs\['batch'\] has 1 missing values"):
        encoder.codes(obs)


def test_empty_encoder_gives_zero_columns():
    encoder = CovariateEncoder.fit(pd.DataFrame(index=range(4)), [])
    assert encoder.one_hot(pd.DataFrame(index=range(4))).shape == (4, 0)
    assert encoder.codes(pd.DataFrame(index=range(4))).shape == (4, 0)


# ---- CountsTensors ------------------------------------------------------------------


def test_from_anndata_builds_every_tensor():
    adata = make_adata()
    tensors = CountsTensors.from_anndata(
        adata, "counts", bio_keys=["cell_type"], tech_keys=["batch", "donor"]
    )
    counts = adata.layers["counts"].toarray()
    assert tensors.n_obs == 60
    assert tensors.n_genes == 12
    assert not tensors.is_sparse
    assert tensors.counts.dtype == torch.float32
    np.testing.assert_array_equal(tensors.counts.numpy(), counts)
    np.testing.assert_allclose(
        tensors.log_library.numpy()[:, 0], np.log(counts.sum(axis=1)), rtol=1e-6
    )
    expected_factorial = torch.lgamma(torch.from_numpy(counts).double() + 1).sum(1)
    np.testing.assert_allclose(tensors.log_factorial.numpy(), expected_factorial, rtol=1e-5)
    assert tensors.bio.shape == (60, 3)
    assert tensors.tech.shape == (60, 4)
    expected_batch = tensors.tech_encoder.codes(adata.obs)[:, 0]
    np.testing.assert_array_equal(tensors.batch_index.numpy(), expected_batch)
    assert tensors.batch_index.dtype == torch.int64
    assert list(tensors.obs_names[:2]) == ["cell0", "cell1"]


def test_tensors_for_encoding_leave_out_the_likelihood_constant():
    adata = make_adata()
    full = CountsTensors.from_anndata(adata, "counts", bio_keys=["cell_type"], tech_keys=["batch"])
    light = CountsTensors.from_anndata(
        adata, "counts", bio_keys=["cell_type"], tech_keys=["batch"], log_factorial=False
    )
    assert light.log_factorial is None
    batch = light.subset(np.arange(60) % 2 == 0).to("cpu").slice(0, 10)
    assert "log_factorial" not in batch
    expected = full.subset(np.arange(60) % 2 == 0).slice(0, 10)
    for key, value in batch.items():
        torch.testing.assert_close(value, expected[key])


def test_no_covariates_give_empty_blocks_and_zero_batch_index():
    tensors = CountsTensors.from_anndata(make_adata(), "counts")
    assert tensors.bio.shape == (60, 0)
    assert tensors.tech.shape == (60, 0)
    assert int(tensors.batch_index.abs().sum()) == 0


def test_given_encoders_are_reused_for_new_data():
    adata = make_adata()
    train = CountsTensors.from_anndata(adata, "counts", tech_keys=["batch"])
    subset = adata[adata.obs["batch"] == "b1"].copy()
    encoders = {"bio": train.bio_encoder.to_dict(), "tech": train.tech_encoder}
    again = CountsTensors.from_anndata(subset, "counts", encoders=encoders)
    assert again.tech.shape == (subset.n_obs, 2)
    np.testing.assert_array_equal(again.tech.numpy()[:, 1], 1.0)
    with pytest.raises(ValueError, match="differ from the given tech encoder"):
        CountsTensors.from_anndata(subset, "counts", tech_keys=["donor"], encoders=encoders)


def test_sparse_storage_gives_the_same_batches_as_dense():
    adata = make_adata()
    dense = CountsTensors.from_anndata(adata, "counts", tech_keys=["batch"])
    sparse = CountsTensors.from_anndata(
        adata, "counts", tech_keys=["batch"], counts_format="sparse"
    )
    assert sparse.is_sparse
    index = torch.tensor([5, 0, 59, 5, 17])
    for key in BATCH_KEYS:
        torch.testing.assert_close(sparse.gather(index)[key], dense.gather(index)[key])
        torch.testing.assert_close(sparse.slice(3, 9)[key], dense.slice(3, 9)[key])
    train_sparse, train_dense = sparse.subset("train"), dense.subset("train")
    assert train_sparse.is_sparse
    assert train_sparse.counts is sparse.counts  # a subset shares the non-zeros
    assert train_dense.counts is dense.counts  # and the dense matrix
    is_train = torch.from_numpy(adata.obs["split"].to_numpy() == "train")
    expected = dense.counts[is_train]  # every stored row, in order
    assert train_sparse.n_obs == train_dense.n_obs == len(expected)
    for train in (train_sparse, train_dense):
        torch.testing.assert_close(train.slice(0, train.n_obs)[COUNTS_KEY], expected)
        # A subset of a subset still finds its cells' rows.
        first = np.zeros(train.n_obs, dtype=bool)
        first[::3] = True
        torch.testing.assert_close(
            train.subset(first).gather(torch.arange(int(first.sum())))[COUNTS_KEY],
            expected[torch.from_numpy(first)],
        )
    assert sparse.nbytes < dense.nbytes + 60 * 12 * 4


def expected_count_keys(counts: torch.Tensor) -> torch.Tensor:
    """The histogram keys of a dense batch's non-zeros, row by row."""
    rows, genes = counts.nonzero(as_tuple=True)
    clamped = counts[rows, genes].clamp(max=COUNT_HISTOGRAM_BINS).int()
    return genes.int() * (COUNT_HISTOGRAM_BINS + 1) + clamped


def test_batches_carry_the_histogram_keys_of_their_counts_whatever_the_storage():
    adata = make_adata()
    adata.layers["counts"][3, 5] = 5 * COUNT_HISTOGRAM_BINS  # beyond the table
    adata.layers["counts"][7] = 0
    adata.layers["counts"][7, 0] = 1  # a cell with a single count
    index = torch.tensor([7, 3, 0, 59, 3])
    for counts_format in ("dense", "sparse"):
        tensors = CountsTensors.from_anndata(
            adata, "counts", tech_keys=["batch"], counts_format=counts_format
        )
        assert tensors.integer_counts
        train = tensors.subset("train")
        some = train.subset(np.arange(train.n_obs) % 2 == 1)  # rows of rows
        for batch in (
            tensors.gather(index),
            tensors.slice(2, 11),
            train.gather(torch.tensor([4, 1, 2])),
            train.slice(0, train.n_obs),
            some.slice(1, 6),
        ):
            keys = batch[COUNT_KEYS_KEY]
            assert keys.dtype == torch.int32
            # A CSR matrix may store zeros (row 7's); their keys fall in bin 0, unread.
            stored_values = keys[keys % (COUNT_HISTOGRAM_BINS + 1) != 0]
            torch.testing.assert_close(
                stored_values, expected_count_keys(batch[COUNTS_KEY]), rtol=0, atol=0
            )
    for chunk in tensors.dense_chunks(25):  # chunks serve encoding: no keys
        assert COUNT_KEYS_KEY not in chunk.slice(0, 5)


def test_non_integer_counts_and_encoding_tensors_carry_no_histogram_keys():
    adata = make_adata()
    light = CountsTensors.from_anndata(adata, "counts", log_factorial=False)
    assert not light.integer_counts
    assert COUNT_KEYS_KEY not in light.gather(torch.tensor([0, 1]))
    adata.layers["counts"][4, 2] += 0.5
    for counts_format in ("dense", "sparse"):
        tensors = CountsTensors.from_anndata(adata, "counts", counts_format=counts_format)
        assert not tensors.integer_counts
        assert tensors.count_keys is None
        assert COUNT_KEYS_KEY not in tensors.gather(torch.tensor([4, 1]))
        assert COUNT_KEYS_KEY not in tensors.slice(0, 6)


def test_choose_counts_format_is_dense_unless_over_budget_and_smaller_sparse():
    matrix = sp.random(100, 50, density=0.05, format="csr", random_state=0)
    assert choose_counts_format(matrix) == "dense"
    assert choose_counts_format(matrix, max_dense_bytes=100 * 50 * 4) == "dense"
    assert choose_counts_format(matrix, max_dense_bytes=1000) == "sparse"
    assert choose_counts_format(matrix.toarray(), max_dense_bytes=1000) == "sparse"
    denser = sp.random(100, 50, density=0.6, format="csr", random_state=0)
    assert choose_counts_format(denser, max_dense_bytes=1000) == "dense"
    assert choose_counts_format(matrix, "sparse") == "sparse"
    with pytest.raises(ValueError, match="counts_format"):
        choose_counts_format(matrix, "coo")  # type: ignore[arg-type]


def test_default_dense_budget_is_an_eighth_of_memory():
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < default_max_dense_bytes() <= total / 8


def test_sparse_counts_share_the_anndata_arrays_and_log_factorials_match_dense(monkeypatch):
    # Row blocks of 7 make the log-factorial sums cross block boundaries.
    monkeypatch.setattr("omics_vae.data.tensors.CONVERSION_ROWS", 7)
    adata = make_adata(n_cells=30)
    adata.layers["counts"] = sp.csr_matrix(adata.layers["counts"], dtype=np.float32)
    sparse = CountsTensors.from_anndata(adata, "counts", counts_format="sparse")
    dense = CountsTensors.from_anndata(adata, "counts", counts_format="dense")
    assert np.shares_memory(sparse.counts.values().numpy(), adata.layers["counts"].data)
    torch.testing.assert_close(sparse.log_factorial, dense.log_factorial)
    expected = torch.lgamma(dense.counts.double() + 1).sum(dim=1).float()
    torch.testing.assert_close(dense.log_factorial, expected)


def test_subset_by_split_name_and_mask():
    adata = make_adata()
    tensors = CountsTensors.from_anndata(adata, "counts", tech_keys=["batch"])
    is_train = (adata.obs["split"] == "train").to_numpy()
    train = tensors.subset("train")
    assert train.n_obs == is_train.sum()
    np.testing.assert_array_equal(train.obs_names, adata.obs_names[is_train])
    np.testing.assert_array_equal(
        train.slice(0, train.n_obs)[COUNTS_KEY].numpy(),
        adata.layers["counts"][is_train].toarray(),
    )
    assert set(train.split) == {"train"}
    by_mask = tensors.subset(torch.from_numpy(~is_train))
    assert by_mask.n_obs == (~is_train).sum()
    assert tensors.subset(["train", "val"]).n_obs == 60
    with pytest.raises(ValueError, match="expected"):
        tensors.subset(np.ones(3, dtype=bool))


def test_bad_counts_fail_early_with_the_fix():
    adata = make_adata()
    with pytest.raises(KeyError, match="no layer 'raw'"):
        CountsTensors.from_anndata(adata, "raw")
    empty = adata.copy()
    empty.layers["counts"] = sp.csr_matrix(empty.layers["counts"].shape, dtype=np.float32)
    with pytest.raises(ValueError, match="60 cells have no counts"):
        CountsTensors.from_anndata(empty, "counts")
    negative = adata.copy()
    negative.layers["counts"] = -negative.layers["counts"]
    with pytest.raises(ValueError, match="non-negative"):
        CountsTensors.from_anndata(negative, "counts")


def test_plan_placement_keeps_data_on_the_cpu():
    placement = plan_placement(10**12, "cpu")
    assert placement.storage == torch.device("cpu")
    assert not placement.pin_memory


# ---- InMemoryBatchLoader ------------------------------------------------------------


def test_batch_bounds_merge_a_single_last_cell_or_drop_it():
    assert batch_bounds(9, 4) == [(0, 4), (4, 9)]
    assert batch_bounds(9, 4, merge_singleton=False) == [(0, 4), (4, 8), (8, 9)]
    assert batch_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert batch_bounds(10, 4, drop_last=True) == [(0, 4), (4, 8)]
    assert batch_bounds(8, 4) == [(0, 4), (4, 8)]
    assert batch_bounds(1, 4) == [(0, 1)]


def test_loader_yields_every_cell_once_per_epoch_with_fixed_keys():
    loader = InMemoryBatchLoader(indexed_tensors(21), batch_size=5, seed=3)
    assert len(loader) == 4  # 5 + 5 + 5 + 6: the single last cell is merged
    first = list(loader)
    assert [b["counts"].shape[0] for b in first] == [5, 5, 5, 6]
    assert set(first[0]) == {*BATCH_KEYS, COUNT_KEYS_KEY}  # integer counts have keys
    assert sorted(epoch_ids(first)) == list(range(21))
    second = list(loader)
    assert sorted(epoch_ids(second)) == list(range(21))
    assert epoch_ids(first) != epoch_ids(second)


def test_loader_order_is_reproducible_for_a_seed():
    orders = [
        epoch_ids(list(InMemoryBatchLoader(indexed_tensors(50), 8, seed=s))) for s in (1, 1, 2)
    ]
    assert orders[0] == orders[1]
    assert orders[0] != orders[2]


def test_loader_without_shuffle_yields_rows_in_order():
    loader = InMemoryBatchLoader(indexed_tensors(10), batch_size=4, shuffle=False)
    assert epoch_ids(list(loader)) == list(range(10))
    assert epoch_ids(list(loader)) == list(range(10))


def test_loader_drop_last():
    loader = InMemoryBatchLoader(indexed_tensors(10), batch_size=4, drop_last=True)
    assert len(loader) == 2
    assert len(epoch_ids(list(loader))) == 8


def test_loader_starts_a_new_epoch_when_a_consumer_stops_after_len_batches():
    # Lightning pulls exactly len(loader) batches and never exhausts the iterator.
    loader = InMemoryBatchLoader(indexed_tensors(20), batch_size=5, seed=0)
    reference = InMemoryBatchLoader(indexed_tensors(20), batch_size=5, seed=0)
    for epoch in range(3):
        iterator = iter(loader)
        batches = [next(iterator) for _ in range(len(loader))]
        assert epoch_ids(batches) == epoch_ids(list(reference)), epoch
        assert loader.epoch == epoch


def test_loader_resumes_mid_epoch_from_its_state():
    original = InMemoryBatchLoader(indexed_tensors(30), batch_size=4, seed=7)
    list(original)  # epoch 0
    iterator = iter(original)
    seen = [next(iterator) for _ in range(3)]  # part of epoch 1
    state = original.state_dict()
    assert state == {"seed": 7, "epoch": 1, "batches_yielded": 3}
    rest = list(iterator)
    following = list(original)  # epoch 2

    resumed = InMemoryBatchLoader(indexed_tensors(30), batch_size=4, seed=0)
    resumed.load_state_dict(state)
    assert epoch_ids(list(resumed)) == epoch_ids(rest)
    assert epoch_ids(list(resumed)) == epoch_ids(following)
    assert sorted(epoch_ids(seen + rest)) == list(range(30))


def test_loader_resumes_after_a_complete_epoch_with_the_next_order():
    original = InMemoryBatchLoader(indexed_tensors(30), batch_size=4, seed=7)
    list(original)
    state = original.state_dict()
    following = epoch_ids(list(original))
    resumed = InMemoryBatchLoader(indexed_tensors(30), batch_size=4, seed=7)
    resumed.load_state_dict(state)
    assert epoch_ids(list(resumed)) == following
    with pytest.raises(ValueError, match="batch size"):
        resumed.load_state_dict({"seed": 7, "epoch": 0, "batches_yielded": 99})


def test_set_epoch_reproduces_an_epoch_order():
    loader = InMemoryBatchLoader(indexed_tensors(30), batch_size=4, seed=7)
    orders = [epoch_ids(list(loader)) for _ in range(3)]
    loader.set_epoch(1)
    assert epoch_ids(list(loader)) == orders[1]
    assert torch.equal(loader.order(2), torch.tensor(orders[2]))


def test_loader_moves_nothing_when_already_on_the_device():
    data = indexed_tensors(12)
    loader = InMemoryBatchLoader(data, batch_size=4, device="cpu")
    assert loader.data is data
    assert loader.n_obs == 12


def test_dense_chunks_are_the_cells_in_order():
    adata = make_adata()
    dense = CountsTensors.from_anndata(adata, "counts", tech_keys=["batch"])
    sparse = CountsTensors.from_anndata(
        adata, "counts", tech_keys=["batch"], counts_format="sparse"
    )
    for tensors in (sparse, dense, sparse.subset("train")):
        chunks = list(tensors.dense_chunks(7))
        assert [len(chunk) for chunk in chunks[:-1]] == [7] * (len(chunks) - 1)
        assert not any(chunk.is_sparse for chunk in chunks)
        everything = tensors.slice(0, tensors.n_obs)
        for key in BATCH_KEYS:
            joined = torch.cat([chunk.slice(0, chunk.n_obs)[key] for chunk in chunks])
            torch.testing.assert_close(joined, everything[key])
        assert np.concatenate([c.obs_names for c in chunks]).tolist() == list(tensors.obs_names)
