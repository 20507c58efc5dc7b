"""LightningCheckpointDataset in the kedro-datasets test style."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kedro.io.core import DatasetError, Version

from omics_vae.data.simulate import simulate_counts
from omics_vae.datasets import LightningCheckpointDataset
from omics_vae.models import SCVIVAE, InVAE


@pytest.fixture
def adata():
    data = simulate_counts(n_cells=60, n_genes=20, n_batches=2, n_cell_types=2, seed=3)
    data.layers["counts"] = data.X.copy()
    return data


@pytest.fixture(params=[InVAE, SCVIVAE], ids=["invae", "scvi_vae"])
def model(request, adata):
    return request.param.from_anndata(
        adata, {"bio_keys": ["cell_type"], "tech_keys": ["batch"], "n_hidden": 8}
    )


@pytest.fixture
def filepath(tmp_path):
    return str(tmp_path / "model.ckpt")


class TestLightningCheckpointDataset:
    def test_round_trip_rebuilds_the_registered_class_with_equal_weights(
        self, model, filepath, adata
    ):
        dataset = LightningCheckpointDataset(filepath=filepath)
        dataset.save(model)
        reloaded = dataset.load()

        assert type(reloaded) is type(model)
        assert not reloaded.training
        assert dict(reloaded.hparams) == dict(model.hparams)
        for key, value in model.state_dict().items():
            torch.testing.assert_close(reloaded.state_dict()[key], value)
        model.eval()
        first_key = next(iter(model.get_latent(adata)))
        np.testing.assert_allclose(
            reloaded.get_latent(adata)[first_key], model.get_latent(adata)[first_key]
        )

    def test_exists(self, model, filepath):
        dataset = LightningCheckpointDataset(filepath=filepath)
        assert not dataset.exists()
        dataset.save(model)
        assert dataset.exists()

    def test_file_holds_lightning_keys_and_the_registry_name(self, model, filepath):
        LightningCheckpointDataset(filepath=filepath).save(model)
        checkpoint = torch.load(filepath, weights_only=True)
        assert {"state_dict", "hyper_parameters", "pytorch-lightning_version"} <= set(checkpoint)
        assert checkpoint["omics_vae_model"] == model.registry_name

    def test_truncated_file_names_the_file(self, model, filepath):
        LightningCheckpointDataset(filepath=filepath).save(model)
        raw = open(filepath, "rb").read()  # noqa: SIM115
        with open(filepath, "wb") as handle:
            handle.write(raw[: len(raw) // 2])
        with pytest.raises(DatasetError, match=r"model\.ckpt.*corrupt or truncated"):
            LightningCheckpointDataset(filepath=filepath).load()

    def test_pickled_objects_are_never_unpickled(self, filepath):
        class Payload:
            def __reduce__(self):
                return (print, ("this must not run",))

        with open(filepath, "wb") as handle:
            torch.save({"state_dict": {}, "hyper_parameters": {}, "x": Payload()}, handle)
        with pytest.raises(DatasetError, match="never unpickled"):
            LightningCheckpointDataset(filepath=filepath).load()

    def test_unknown_model_name_lists_the_registered_ones(self, model, filepath):
        LightningCheckpointDataset(filepath=filepath).save(model)
        checkpoint = torch.load(filepath, weights_only=True)
        checkpoint["omics_vae_model"] = "joint_vae_from_the_future"
        torch.save(checkpoint, filepath)
        with pytest.raises(DatasetError, match="invae"):
            LightningCheckpointDataset(filepath=filepath).load()

    def test_a_failed_save_keeps_the_previous_file(self, model, filepath, monkeypatch):
        dataset = LightningCheckpointDataset(filepath=filepath)
        dataset.save(model)
        before = open(filepath, "rb").read()  # noqa: SIM115

        def fail_midway(obj, path, *args, **kwargs):
            with open(path, "wb") as handle:
                handle.write(b"half a checkpoint")
            raise OSError("disk full")

        monkeypatch.setattr(torch, "save", fail_midway)
        with pytest.raises(DatasetError):
            dataset.save(model)
        assert open(filepath, "rb").read() == before  # noqa: SIM115

    def test_lightning_checkpoint_from_the_trainer_loads(self, model, filepath):
        # The dataset also reads what ModelCheckpoint writes (plus a registry name).
        payload = {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "epoch": 3,
            "omics_vae_model": model.registry_name,
        }
        torch.save(payload, filepath)
        assert type(LightningCheckpointDataset(filepath=filepath).load()) is type(model)


class TestLightningCheckpointDatasetVersioned:
    def test_two_saves_make_two_versions_and_load_picks_one(self, model, tmp_path):
        filepath = str(tmp_path / "model.ckpt")
        first = LightningCheckpointDataset(filepath=filepath, version=Version(None, "v1"))
        first.save(model)
        with torch.no_grad():
            next(model.parameters()).add_(1.0)
        LightningCheckpointDataset(filepath=filepath, version=Version(None, "v2")).save(model)

        latest = LightningCheckpointDataset(filepath=filepath, version=Version(None, None))
        pinned = LightningCheckpointDataset(filepath=filepath, version=Version("v1", None))
        changed = next(iter(model.state_dict()))
        torch.testing.assert_close(latest.load().state_dict()[changed], model.state_dict()[changed])
        assert not torch.equal(pinned.load().state_dict()[changed], model.state_dict()[changed])

    def test_missing_version_raises(self, tmp_path):
        dataset = LightningCheckpointDataset(
            filepath=str(tmp_path / "model.ckpt"), version=Version("nope", None)
        )
        with pytest.raises(DatasetError):
            dataset.load()

    def test_existing_version_is_never_overwritten(self, model, tmp_path):
        filepath = str(tmp_path / "model.ckpt")
        LightningCheckpointDataset(filepath=filepath, version=Version(None, "v1")).save(model)
        with pytest.raises(DatasetError, match="must not exist"):
            LightningCheckpointDataset(filepath=filepath, version=Version(None, "v1")).save(model)
