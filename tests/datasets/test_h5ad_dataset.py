from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData
from fsspec.implementations.cached import WholeFileCacheFileSystem
from fsspec.implementations.http import HTTPFileSystem
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog
from kedro.io.core import PROTOCOL_DELIMITER, DatasetError, Version, generate_timestamp

from omics_vae.datasets import H5ADDataset
from omics_vae.schemas.data_processing import DataProcessingParams
from omics_vae.settings import CONFIG_LOADER_ARGS

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FIGSHARE_PANCREAS_URL = "https://figshare.com/ndownloader/files/24539828"


@pytest.fixture
def filepath_h5ad(tmp_path):
    return (tmp_path / "cells.h5ad").as_posix()


@pytest.fixture
def dummy_adata():
    rng = np.random.default_rng(0)
    counts = sp.random(
        30,
        8,
        density=0.4,
        format="csr",
        dtype=np.float32,
        rng=rng,
        data_rvs=lambda n: rng.integers(1, 9, n),
    )
    obs = pd.DataFrame(
        {
            "batch": pd.Categorical(rng.choice(["batch_0", "batch_1"], 30)),
            "cell_type": pd.Categorical(rng.choice(["type_A", "type_B", "type_C"], 30)),
            "total_counts": np.asarray(counts.sum(axis=1)).ravel(),
        },
        index=[f"cell_{i:02d}" for i in range(30)],
    )
    var = pd.DataFrame(
        {"gene_family": pd.Categorical(["MT", "RP"] + ["other"] * 6)},
        index=[f"GENE{i:04d}" for i in range(8)],
    )
    return AnnData(
        X=counts,
        obs=obs,
        var=var,
        layers={"counts": counts.copy(), "dense": counts.toarray()},
        obsm={"X_pca": rng.normal(size=(30, 3))},
        uns={"simulation": {"seed": 0, "note": "tiny"}, "colors": np.array(["red", "blue"])},
    )


@pytest.fixture
def h5ad_dataset(filepath_h5ad, load_args, save_args, fs_args):
    return H5ADDataset(
        filepath=filepath_h5ad, load_args=load_args, save_args=save_args, fs_args=fs_args
    )


@pytest.fixture(params=[None])
def load_args(request):
    return request.param


@pytest.fixture(params=[None])
def save_args(request):
    return request.param


@pytest.fixture(params=[None])
def fs_args(request):
    return request.param


@pytest.fixture(params=[None])
def load_version(request):
    return request.param


@pytest.fixture(params=[None])
def save_version(request):
    return request.param or generate_timestamp()


@pytest.fixture
def versioned_h5ad_dataset(filepath_h5ad, load_version, save_version):
    return H5ADDataset(filepath=filepath_h5ad, version=Version(load_version, save_version))


class _QuietRequestHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


class _QuietHTTPServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # fsspec probes a file's size with a GET that it abandons; the broken pipe
        # that follows is expected, not a failure.
        pass


@pytest.fixture
def http_root(tmp_path):
    """A folder served over HTTP on a loopback port; yields (folder, base URL)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietRequestHandler, directory=str(served))
    server = _QuietHTTPServer(("127.0.0.1", 0), handler)
    # A short poll interval lets shutdown() return at once instead of after 0.5 s.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def assert_adata_equal(actual: AnnData, expected: AnnData) -> None:
    assert sp.issparse(actual.X)
    assert actual.X.format == "csr"
    np.testing.assert_array_equal(actual.X.toarray(), expected.X.toarray())
    assert actual.X.dtype == expected.X.dtype
    assert set(actual.layers) == set(expected.layers)
    for name, layer in expected.layers.items():
        loaded = actual.layers[name]
        assert sp.issparse(loaded) == sp.issparse(layer)
        np.testing.assert_array_equal(
            loaded.toarray() if sp.issparse(loaded) else loaded,
            layer.toarray() if sp.issparse(layer) else layer,
        )
    pd.testing.assert_frame_equal(actual.obs, expected.obs)
    pd.testing.assert_frame_equal(actual.var, expected.var)
    np.testing.assert_array_equal(actual.obsm["X_pca"], expected.obsm["X_pca"])
    assert actual.uns["simulation"] == expected.uns["simulation"]
    np.testing.assert_array_equal(actual.uns["colors"], expected.uns["colors"])


def write_partially_then_fail(adata, filename, **kwargs):
    """Stands in for AnnData.write_h5ad: dies halfway through writing the file."""
    Path(filename).write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    raise OSError("disk full")


def write_plain_hdf5(path: Path) -> None:
    """An HDF5 file that is not an AnnData."""
    with h5py.File(path, "w") as h5_file:
        h5_file["matrix"] = np.arange(6).reshape(2, 3)


class TestH5ADDataset:
    def test_save_and_load(self, h5ad_dataset, dummy_adata):
        """Test saving and reloading the data set."""
        h5ad_dataset.save(dummy_adata)
        reloaded = h5ad_dataset.load()

        assert_adata_equal(reloaded, dummy_adata)
        assert isinstance(reloaded.obs["batch"].dtype, pd.CategoricalDtype)
        assert isinstance(reloaded.var["gene_family"].dtype, pd.CategoricalDtype)
        assert list(reloaded.obs["cell_type"].cat.categories) == ["type_A", "type_B", "type_C"]

    def test_exists(self, h5ad_dataset, dummy_adata):
        """Test `exists` method invocation for both existing and
        nonexistent data set."""
        assert not h5ad_dataset.exists()
        h5ad_dataset.save(dummy_adata)
        assert h5ad_dataset.exists()

    def test_save_creates_missing_folders(self, tmp_path, dummy_adata):
        dataset = H5ADDataset(filepath=(tmp_path / "a" / "b" / "cells.h5ad").as_posix())
        dataset.save(dummy_adata)
        assert (tmp_path / "a" / "b" / "cells.h5ad").is_file()

    @pytest.mark.parametrize("load_args", [{"backed": "r"}], indirect=True)
    def test_load_extra_params(self, h5ad_dataset, load_args, dummy_adata):
        """Test overriding the default load arguments."""
        for key, value in load_args.items():
            assert h5ad_dataset._load_args[key] == value
        h5ad_dataset.save(dummy_adata)

        backed = h5ad_dataset.load()
        try:
            assert backed.isbacked
            assert Path(backed.filename) == Path(h5ad_dataset._filepath)
            np.testing.assert_array_equal(backed.X[:5].toarray(), dummy_adata.X[:5].toarray())
        finally:
            backed.file.close()

    @pytest.mark.parametrize(
        "save_args", [{"compression": "gzip", "compression_opts": 4}], indirect=True
    )
    def test_save_extra_params(self, h5ad_dataset, save_args, dummy_adata, filepath_h5ad):
        """Test overriding the default save arguments."""
        for key, value in save_args.items():
            assert h5ad_dataset._save_args[key] == value
        h5ad_dataset.save(dummy_adata)

        with h5py.File(filepath_h5ad, "r") as h5_file:
            assert h5_file["X"]["data"].compression == "gzip"
            assert h5_file["X"]["data"].compression_opts == 4
        assert_adata_equal(h5ad_dataset.load(), dummy_adata)

    def test_saves_uncompressed_by_default(self, h5ad_dataset, dummy_adata, filepath_h5ad):
        h5ad_dataset.save(dummy_adata)
        with h5py.File(filepath_h5ad, "r") as h5_file:
            assert h5_file["X"]["data"].compression is None

    @pytest.mark.parametrize("load_args", [{"not_an_option": True}], indirect=True)
    def test_wrong_load_arg_is_not_mistaken_for_corruption(self, h5ad_dataset, dummy_adata):
        """A wrong option fails with anndata's own message, not a 'corrupt file' one."""
        h5ad_dataset.save(dummy_adata)
        with pytest.raises(DatasetError, match="not_an_option") as error:
            h5ad_dataset.load()
        assert "corrupt" not in str(error.value)

    def test_load_missing_file(self, h5ad_dataset):
        """Check the error when trying to load missing file."""
        pattern = r"Failed while loading data from dataset .*H5ADDataset\(.*\)"
        with pytest.raises(DatasetError, match=pattern):
            h5ad_dataset.load()

    @pytest.mark.parametrize(
        "make_bad_file",
        [
            pytest.param(lambda path: path.write_text("cell,gene\n1,2\n"), id="csv"),
            pytest.param(lambda path: path.write_bytes(b""), id="empty"),
            pytest.param(
                write_plain_hdf5,
                id="hdf5-not-anndata",
                marks=pytest.mark.filterwarnings("ignore::anndata.OldFormatWarning"),
            ),
        ],
    )
    def test_load_corrupt_file(self, h5ad_dataset, filepath_h5ad, make_bad_file):
        make_bad_file(Path(filepath_h5ad))
        with pytest.raises(DatasetError, match="corrupt or not an h5ad") as error:
            h5ad_dataset.load()
        assert filepath_h5ad in str(error.value)

    def test_load_truncated_file(self, h5ad_dataset, dummy_adata, filepath_h5ad):
        h5ad_dataset.save(dummy_adata)
        whole = Path(filepath_h5ad).read_bytes()
        Path(filepath_h5ad).write_bytes(whole[: len(whole) // 2])

        with pytest.raises(DatasetError, match=r"corrupt or not an h5ad.*truncated"):
            h5ad_dataset.load()

    def test_interrupted_save_keeps_previous_file(
        self, h5ad_dataset, dummy_adata, filepath_h5ad, monkeypatch
    ):
        h5ad_dataset.save(dummy_adata)
        good_bytes = Path(filepath_h5ad).read_bytes()
        changed = dummy_adata[:10].copy()

        monkeypatch.setattr(AnnData, "write_h5ad", write_partially_then_fail)
        with pytest.raises(DatasetError, match="disk full"):
            h5ad_dataset.save(changed)
        monkeypatch.undo()

        assert Path(filepath_h5ad).read_bytes() == good_bytes
        assert_adata_equal(h5ad_dataset.load(), dummy_adata)
        assert [p.name for p in Path(filepath_h5ad).parent.iterdir()] == ["cells.h5ad"]

    def test_interrupted_first_save_leaves_nothing(
        self, h5ad_dataset, dummy_adata, filepath_h5ad, monkeypatch
    ):
        monkeypatch.setattr(AnnData, "write_h5ad", write_partially_then_fail)
        with pytest.raises(DatasetError, match="disk full"):
            h5ad_dataset.save(dummy_adata)

        assert not h5ad_dataset.exists()
        assert list(Path(filepath_h5ad).parent.iterdir()) == []

    @pytest.mark.parametrize(
        ("filepath", "instance_type"),
        [
            ("memory:///bucket/cells.h5ad", MemoryFileSystem),
            ("file:///tmp/cells.h5ad", LocalFileSystem),
            ("/tmp/cells.h5ad", LocalFileSystem),
            ("https://example.com/cells.h5ad", HTTPFileSystem),
        ],
    )
    def test_protocol_usage(self, filepath, instance_type):
        dataset = H5ADDataset(filepath=filepath)
        assert isinstance(dataset._fs, instance_type)

        path = filepath.split(PROTOCOL_DELIMITER, 1)[-1]
        assert str(dataset._filepath) == path
        assert isinstance(dataset._filepath, PurePosixPath)

    def test_save_and_load_on_remote_filesystem(self, dummy_adata):
        """A non-local filesystem goes through a temporary local file both ways."""
        dataset = H5ADDataset(filepath="memory:///h5ad-tests/round-trip/cells.h5ad")
        try:
            dataset.save(dummy_adata)
            assert dataset.exists()
            assert_adata_equal(dataset.load(), dummy_adata)
            assert MemoryFileSystem().ls("/h5ad-tests/round-trip", detail=False) == [
                "/h5ad-tests/round-trip/cells.h5ad"
            ]
        finally:
            MemoryFileSystem().rm("/h5ad-tests", recursive=True)

    def test_interrupted_remote_save_keeps_previous_file(self, dummy_adata, monkeypatch):
        dataset = H5ADDataset(filepath="memory:///h5ad-tests/interrupted/cells.h5ad")
        try:
            dataset.save(dummy_adata)
            monkeypatch.setattr(AnnData, "write_h5ad", write_partially_then_fail)
            with pytest.raises(DatasetError, match="disk full"):
                dataset.save(dummy_adata[:5].copy())
            monkeypatch.undo()

            assert_adata_equal(dataset.load(), dummy_adata)
        finally:
            MemoryFileSystem().rm("/h5ad-tests", recursive=True)

    def test_failed_remote_rename_keeps_previous_file_and_no_partial(
        self, dummy_adata, monkeypatch
    ):
        dataset = H5ADDataset(filepath="memory:///h5ad-tests/rename/cells.h5ad")

        def lose_connection(self, *args, **kwargs):
            raise ConnectionError("connection lost")

        try:
            dataset.save(dummy_adata)
            monkeypatch.setattr(MemoryFileSystem, "mv", lose_connection)
            with pytest.raises(DatasetError, match="connection lost"):
                dataset.save(dummy_adata[:5].copy())
            monkeypatch.undo()

            assert_adata_equal(dataset.load(), dummy_adata)
            assert MemoryFileSystem().ls("/h5ad-tests/rename", detail=False) == [
                "/h5ad-tests/rename/cells.h5ad"
            ]
        finally:
            MemoryFileSystem().rm("/h5ad-tests", recursive=True)

    def test_save_through_cache_replaces_the_cached_copy(self, tmp_path, dummy_adata):
        dataset = H5ADDataset(
            filepath="memory:///h5ad-tests/cached/cells.h5ad",
            fs_args={"cache_storage": str(tmp_path / "cache")},
        )
        try:
            dataset.save(dummy_adata)
            assert dataset.load().n_obs == 30
            dataset.save(dummy_adata[:4].copy())
            assert dataset.load().n_obs == 4
        finally:
            MemoryFileSystem().rm("/h5ad-tests", recursive=True)

    def test_cache_storage_for_local_file_is_refused(self, filepath_h5ad, tmp_path):
        with pytest.raises(DatasetError, match="cache_storage only applies to remote"):
            H5ADDataset(filepath=filepath_h5ad, fs_args={"cache_storage": str(tmp_path)})

    def test_backed_load_of_uncached_remote_file_is_refused(self):
        with pytest.raises(DatasetError, match=r"backed needs a local file.*cache_storage"):
            H5ADDataset(filepath="https://example.com/cells.h5ad", load_args={"backed": "r"})

    def test_describe(self, tmp_path):
        dataset = H5ADDataset(
            filepath="https://example.com/cells.h5ad",
            fs_args={"cache_storage": str(tmp_path)},
        )
        description = str(dataset)
        assert "protocol='https'" in description
        assert "example.com/cells.h5ad" in description
        assert "'compression': None" in description
        assert str(tmp_path) in description

    def test_load_over_http(self, http_root, dummy_adata):
        served, base_url = http_root
        ad.AnnData.write_h5ad(dummy_adata, served / "cells.h5ad")

        dataset = H5ADDataset(filepath=f"{base_url}/cells.h5ad")
        assert dataset.exists()
        assert_adata_equal(dataset.load(), dummy_adata)

    def test_missing_http_file(self, http_root):
        _, base_url = http_root
        dataset = H5ADDataset(filepath=f"{base_url}/absent.h5ad")
        assert not dataset.exists()
        with pytest.raises(DatasetError, match=r"absent\.h5ad"):
            dataset.load()

    def test_http_cache_avoids_second_download(self, http_root, tmp_path, dummy_adata):
        served, base_url = http_root
        ad.AnnData.write_h5ad(dummy_adata, served / "cells.h5ad")
        cache = tmp_path / "cache"
        url = f"{base_url}/cells.h5ad"

        first = H5ADDataset(filepath=url, fs_args={"cache_storage": str(cache)}).load()
        (served / "cells.h5ad").unlink()
        # As in a second `kedro run`: fsspec forgets its filesystems, only the folder stays.
        WholeFileCacheFileSystem.clear_instance_cache()
        second = H5ADDataset(filepath=url, fs_args={"cache_storage": str(cache)}).load()

        assert_adata_equal(first, dummy_adata)
        assert_adata_equal(second, dummy_adata)
        with pytest.raises(DatasetError):
            H5ADDataset(filepath=url).load()

    def test_corrupt_http_file_names_url_and_cached_copy(self, http_root, tmp_path):
        served, base_url = http_root
        (served / "cells.h5ad").write_text("<html>Rate limit exceeded</html>")
        dataset = H5ADDataset(
            filepath=f"{base_url}/cells.h5ad", fs_args={"cache_storage": str(tmp_path / "c")}
        )

        with pytest.raises(DatasetError, match="corrupt or not an h5ad") as error:
            dataset.load()
        assert f"{base_url}/cells.h5ad (cached as {tmp_path / 'c'}" in str(error.value)

    def test_backed_load_of_cached_http_file(self, http_root, tmp_path, dummy_adata):
        served, base_url = http_root
        ad.AnnData.write_h5ad(dummy_adata, served / "cells.h5ad")
        cache = tmp_path / "cache"

        backed = H5ADDataset(
            filepath=f"{base_url}/cells.h5ad",
            load_args={"backed": "r"},
            fs_args={"cache_storage": str(cache)},
        ).load()
        try:
            assert backed.isbacked
            assert Path(backed.filename).parent == cache
        finally:
            backed.file.close()

    def test_catalog_entry_from_yaml_config(self, filepath_h5ad, dummy_adata):
        catalog = DataCatalog.from_config(
            {
                "cells": {
                    "type": "omics_vae.datasets.H5ADDataset",
                    "filepath": filepath_h5ad,
                    "save_args": {"compression": "lzf"},
                }
            }
        )
        catalog.save("cells", dummy_adata)
        assert_adata_equal(catalog.load("cells"), dummy_adata)


class TestH5ADDatasetVersioned:
    def test_version_str_repr(self, load_version, save_version):
        """Test that version is in string representation of the class instance
        when applicable."""
        filepath = "cells.h5ad"
        dataset = H5ADDataset(filepath=filepath)
        dataset_versioned = H5ADDataset(
            filepath=filepath, version=Version(load_version, save_version)
        )
        assert filepath in str(dataset)
        assert "version" not in str(dataset)

        assert filepath in str(dataset_versioned)
        ver_str = f"version=Version(load={load_version}, save='{save_version}')"
        assert ver_str in str(dataset_versioned)
        assert "H5ADDataset" in str(dataset_versioned)
        assert "protocol" in str(dataset_versioned)

    def test_save_and_load(self, versioned_h5ad_dataset, dummy_adata, filepath_h5ad, save_version):
        """Test that saved and reloaded data matches the original one for
        the versioned data set."""
        versioned_h5ad_dataset.save(dummy_adata)
        assert_adata_equal(versioned_h5ad_dataset.load(), dummy_adata)
        assert (Path(filepath_h5ad) / save_version / "cells.h5ad").is_file()

    def test_two_saves_make_two_versions(self, filepath_h5ad, dummy_adata):
        first, second = "2024-01-01T00.00.00.000Z", "2024-01-02T00.00.00.000Z"
        H5ADDataset(filepath=filepath_h5ad, version=Version(None, first)).save(dummy_adata)
        H5ADDataset(filepath=filepath_h5ad, version=Version(None, second)).save(
            dummy_adata[:7].copy()
        )

        latest = H5ADDataset(filepath=filepath_h5ad, version=Version(None, None))
        assert latest.list_versions(full_path=False) == [second, first]
        assert latest.load().n_obs == 7
        pinned = H5ADDataset(filepath=filepath_h5ad, version=Version(first, None))
        assert pinned.load().n_obs == 30

    def test_no_versions(self, versioned_h5ad_dataset):
        """Check the error if no versions are available for load."""
        pattern = r"Did not find any versions for .*H5ADDataset\(.+\)"
        with pytest.raises(DatasetError, match=pattern):
            versioned_h5ad_dataset.load()

    def test_load_missing_version(self, filepath_h5ad, dummy_adata):
        H5ADDataset(filepath=filepath_h5ad, version=Version(None, None)).save(dummy_adata)
        missing = H5ADDataset(
            filepath=filepath_h5ad, version=Version("2000-01-01T00.00.00.000Z", None)
        )
        assert not missing.exists()
        with pytest.raises(DatasetError, match=r"2000-01-01T00\.00\.00\.000Z"):
            missing.load()

    def test_exists(self, versioned_h5ad_dataset, dummy_adata):
        """Test `exists` method invocation for versioned data set."""
        assert not versioned_h5ad_dataset.exists()
        versioned_h5ad_dataset.save(dummy_adata)
        assert versioned_h5ad_dataset.exists()

    def test_prevent_overwrite(
        self, versioned_h5ad_dataset, dummy_adata, filepath_h5ad, save_version
    ):
        """Check the error when attempting to override the data set if the
        corresponding h5ad file for a given save version already exists."""
        versioned_h5ad_dataset.save(dummy_adata)
        saved = Path(filepath_h5ad) / save_version / "cells.h5ad"
        first_bytes = saved.read_bytes()

        pattern = (
            r"Save path \'.+\' for .*H5ADDataset\(.+\) must "
            r"not exist if versioning is enabled\."
        )
        with pytest.raises(DatasetError, match=pattern):
            versioned_h5ad_dataset.save(dummy_adata[:3].copy())
        assert saved.read_bytes() == first_bytes

    def test_concurrent_writer_is_not_overwritten(
        self, versioned_h5ad_dataset, dummy_adata, filepath_h5ad, save_version, monkeypatch
    ):
        """A version that appears between Kedro's existence check and the rename wins."""
        destination = Path(filepath_h5ad) / save_version / "cells.h5ad"
        real_write = AnnData.write_h5ad

        def write_while_another_process_saves(adata, filename, **kwargs):
            real_write(adata, filename, **kwargs)
            destination.write_bytes(b"written by a concurrent run")

        monkeypatch.setattr(AnnData, "write_h5ad", write_while_another_process_saves)
        with pytest.raises(DatasetError, match="already exists; a versioned save never"):
            versioned_h5ad_dataset.save(dummy_adata)

        assert destination.read_bytes() == b"written by a concurrent run"
        assert [p.name for p in destination.parent.iterdir()] == ["cells.h5ad"]

    @pytest.mark.parametrize("load_version", ["2019-01-01T23.59.59.999Z"], indirect=True)
    @pytest.mark.parametrize("save_version", ["2019-01-02T00.00.00.000Z"], indirect=True)
    def test_save_version_warning(
        self, versioned_h5ad_dataset, load_version, save_version, dummy_adata
    ):
        """Check the warning when saving to the path that differs from
        the subsequent load path."""
        pattern = (
            rf"Save version '{save_version}' did not match load version "
            rf"'{load_version}' for .*H5ADDataset\(.+\)"
        )
        with pytest.warns(UserWarning, match=pattern):
            versioned_h5ad_dataset.save(dummy_adata)

    def test_http_filesystem_no_versioning(self):
        pattern = "Versioning is not supported for HTTP protocols."

        with pytest.raises(DatasetError, match=pattern):
            H5ADDataset(filepath="https://example.com/cells.h5ad", version=Version(None, None))

    def test_versioning_existing_dataset(self, h5ad_dataset, versioned_h5ad_dataset, dummy_adata):
        """Check the error when attempting to save a versioned dataset on top of an
        already existing (non-versioned) dataset."""
        h5ad_dataset.save(dummy_adata)
        assert h5ad_dataset.exists()
        assert h5ad_dataset._filepath == versioned_h5ad_dataset._filepath
        pattern = (
            f"(?=.*file with the same name already exists in the directory)"
            f"(?=.*{versioned_h5ad_dataset._filepath.parent.as_posix()})"
        )
        with pytest.raises(DatasetError, match=pattern):
            versioned_h5ad_dataset.save(dummy_adata)

        # Remove non-versioned dataset and try again
        Path(h5ad_dataset._filepath.as_posix()).unlink()
        versioned_h5ad_dataset.save(dummy_adata)
        assert versioned_h5ad_dataset.exists()

    def test_versioned_remote_round_trip(self, dummy_adata):
        filepath = "memory:///h5ad-tests/versioned/cells.h5ad"
        try:
            dataset = H5ADDataset(filepath=filepath, version=Version(None, None))
            dataset.save(dummy_adata)
            assert_adata_equal(dataset.load(), dummy_adata)
            assert len(dataset.list_versions()) == 1
        finally:
            MemoryFileSystem().rm("/h5ad-tests", recursive=True)


class TestPancreasEnvironment:
    """conf/pancreas reads the scIB human-pancreas benchmark; it is checked offline."""

    @pytest.fixture
    def config(self, tmp_path, monkeypatch):
        # The relative cache folder is created on construction: keep it out of the project.
        monkeypatch.chdir(tmp_path)
        return OmegaConfigLoader(
            conf_source=str(PROJECT_ROOT / "conf"),
            **{**CONFIG_LOADER_ARGS, "default_run_env": "pancreas"},
        )

    def test_raw_counts_is_the_cached_figshare_file(self, config):
        catalog = DataCatalog.from_config({"raw_counts": config["catalog"]["raw_counts"]})
        raw_counts = catalog["raw_counts"]

        assert isinstance(raw_counts, H5ADDataset)
        assert raw_counts._protocol == "https"
        assert raw_counts._describe()["filepath"] == PurePosixPath(
            FIGSHARE_PANCREAS_URL.split(PROTOCOL_DELIMITER, 1)[1]
        )
        assert raw_counts._cache_args["cache_storage"].startswith("data/01_raw/")

    def test_parameters_name_the_pancreas_keys(self, config):
        params = DataProcessingParams.model_validate(config["parameters"]["data_processing"])
        assert params.counts_layer == "counts"
        assert params.batch_key == "tech"
        assert params.cell_type_key == "celltype"
        assert params.hvg.n_top_genes == 2000
        # Keys the environment leaves out keep the base values (soft merge).
        assert params.hvg.flavor == "seurat_v3"
        assert params.qc.min_genes_per_cell == 200
