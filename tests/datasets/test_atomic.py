"""Orphan partial files: what a killed save leaves behind, and what the next save removes."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from anndata import AnnData
from kedro.io.core import DatasetError, Version

from omics_vae.datasets import H5ADDataset
from omics_vae.datasets._atomic import (
    LEGACY_PARTIAL_MAX_AGE_S,
    process_is_alive,
    write_local_atomically,
)

ATOMIC_LOGGER = "omics_vae.datasets._atomic"
OLD_VERSION = "2024-01-01T00.00.00.000Z"
NEW_VERSION = "2024-01-02T00.00.00.000Z"


@pytest.fixture
def adata():
    return AnnData(X=np.arange(12, dtype=np.float32).reshape(4, 3))


@pytest.fixture
def dataset_folder(tmp_path):
    """The folder of a versioned dataset: one child folder per version."""
    return tmp_path / "cells.h5ad"


@pytest.fixture(scope="module")
def dead_pid():
    """The PID of a process of this host that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture(scope="module")
def live_pid():
    """The PID of another process of this host that runs until the tests end."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process.pid
    process.terminate()
    process.wait()


def plant_partial(folder: Path, *, pid: int, host: str | None = None, name="cells.h5ad") -> Path:
    """A partial file as a writer of process ``pid`` on ``host`` names it."""
    folder.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname() if host is None else host
    partial = folder / f".{name}.{host}.{pid}.{uuid.uuid4().hex}.partial"
    partial.write_bytes(b"\x89HDF half-written")
    return partial


def plant_legacy_partial(folder: Path, *, age_s: float) -> Path:
    """A partial file named as before writers were recorded, last modified ``age_s`` ago."""
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".cells.h5ad.{uuid.uuid4().hex}.partial"
    partial.write_bytes(b"\x89HDF half-written")
    modified = time.time() - age_s
    os.utime(partial, (modified, modified))
    return partial


def save_version(dataset_folder: Path, adata: AnnData, version: str = NEW_VERSION) -> None:
    H5ADDataset(filepath=str(dataset_folder), version=Version(None, version)).save(adata)


def partials_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.partial"))


class TestOrphanPartialsAreRemoved:
    def test_dead_writers_partials_in_sibling_and_own_version_folder(
        self, dataset_folder, adata, dead_pid, caplog
    ):
        in_sibling = plant_partial(dataset_folder / OLD_VERSION, pid=dead_pid)
        in_own = plant_partial(dataset_folder / NEW_VERSION, pid=dead_pid)

        with caplog.at_level(logging.INFO, logger=ATOMIC_LOGGER):
            save_version(dataset_folder, adata)

        assert partials_under(dataset_folder) == []
        assert (dataset_folder / NEW_VERSION / "cells.h5ad").is_file()
        for partial in (in_sibling, in_own):
            assert f"Removed '{partial}'" in caplog.text
        assert caplog.text.count(f"process {dead_pid} on this host, no longer runs") == 2

    def test_dead_writers_partial_beside_an_unversioned_file(self, tmp_path, adata, dead_pid):
        partial = plant_partial(tmp_path, pid=dead_pid)

        H5ADDataset(filepath=str(tmp_path / "cells.h5ad")).save(adata)

        assert not partial.exists()
        assert sorted(path.name for path in tmp_path.iterdir()) == ["cells.h5ad"]

    def test_legacy_partial_untouched_for_longer_than_the_limit(
        self, dataset_folder, adata, caplog
    ):
        partial = plant_legacy_partial(
            dataset_folder / OLD_VERSION, age_s=LEGACY_PARTIAL_MAX_AGE_S + 600
        )

        with caplog.at_level(logging.INFO, logger=ATOMIC_LOGGER):
            save_version(dataset_folder, adata)

        assert not partial.exists()
        assert "names no writer and was last modified 1.2 h ago" in caplog.text


class TestPartialsOfPossiblyLiveWritersAreKept:
    def test_partial_of_a_live_process(self, dataset_folder, adata, live_pid):
        partial = plant_partial(dataset_folder / OLD_VERSION, pid=live_pid)

        save_version(dataset_folder, adata)

        assert partials_under(dataset_folder) == [partial]

    def test_partial_of_this_process(self, tmp_path, adata):
        """Another thread of this process may be writing it (Kedro's ThreadRunner)."""
        partial = plant_partial(tmp_path, pid=os.getpid())

        H5ADDataset(filepath=str(tmp_path / "cells.h5ad")).save(adata)

        assert partial.exists()

    def test_partial_of_another_host(self, dataset_folder, adata, dead_pid):
        """A PID says nothing about a process of another host sharing the folder."""
        partial = plant_partial(
            dataset_folder / OLD_VERSION, pid=dead_pid, host=f"not-{socket.gethostname()}"
        )

        save_version(dataset_folder, adata)

        assert partials_under(dataset_folder) == [partial]

    def test_partial_of_another_file(self, tmp_path, adata, dead_pid):
        partial = plant_partial(tmp_path, pid=dead_pid, name="other.h5ad")

        H5ADDataset(filepath=str(tmp_path / "cells.h5ad")).save(adata)

        assert partial.exists()

    def test_recent_legacy_partial(self, dataset_folder, adata):
        partial = plant_legacy_partial(
            dataset_folder / OLD_VERSION, age_s=LEGACY_PARTIAL_MAX_AGE_S - 600
        )

        save_version(dataset_folder, adata)

        assert partials_under(dataset_folder) == [partial]


class TestPartialNames:
    def test_a_partial_names_this_host_and_process(self, tmp_path):
        written = []

        write_local_atomically(
            lambda path: written.append(path) or path.write_bytes(b"data"),
            tmp_path / "cells.h5ad",
            overwrite=True,
        )

        prefix = f".cells.h5ad.{socket.gethostname()}.{os.getpid()}."
        assert written[0].parent == tmp_path
        assert written[0].name.startswith(prefix)
        assert written[0].name.endswith(".partial")
        assert (tmp_path / "cells.h5ad").read_bytes() == b"data"

    def test_an_interrupted_versioned_save_leaves_no_partial(self, dataset_folder, adata):
        def write_then_fail(path: Path) -> None:
            path.write_bytes(b"\x89HDF half-written")
            raise OSError("disk full")

        destination = dataset_folder / NEW_VERSION / "cells.h5ad"
        with pytest.raises(OSError, match="disk full"):
            write_local_atomically(write_then_fail, destination, overwrite=False)

        assert partials_under(dataset_folder) == []
        assert not destination.exists()

    def test_an_interrupted_h5ad_save_leaves_no_partial(self, dataset_folder, adata, monkeypatch):
        def write_h5ad_then_fail(self, filename, **kwargs):
            Path(filename).write_bytes(b"\x89HDF half-written")
            raise OSError("disk full")

        monkeypatch.setattr(AnnData, "write_h5ad", write_h5ad_then_fail)
        with pytest.raises(DatasetError, match="disk full"):
            save_version(dataset_folder, adata)

        assert partials_under(dataset_folder) == []


class TestProcessIsAlive:
    def test_tells_a_live_process_from_a_dead_one(self, live_pid, dead_pid):
        assert process_is_alive(os.getpid())
        assert process_is_alive(live_pid)
        assert not process_is_alive(dead_pid)
