"""``LightningCheckpointDataset`` saves a trained model as a Lightning-style checkpoint and
loads it back into the right class, found by name in the model registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from kedro.io.core import (
    get_filepath_str,
)

import omics_vae
from omics_vae.datasets._fsspec import FsspecVersionedDataset
from omics_vae.datasets.errors import DatasetInputError
from omics_vae.models.checkpoints import (
    MODEL_NAME_KEY,
    CheckpointError,
    model_from_checkpoint,
)
from omics_vae.models.checkpoints import read_checkpoint as read_checkpoint_file

if TYPE_CHECKING:
    from lightning import LightningModule


class LightningCheckpointDataset(FsspecVersionedDataset["LightningModule", "LightningModule"]):
    """``LightningCheckpointDataset`` saves and loads the project's Lightning models.

    The file is a Lightning-compatible checkpoint (``state_dict``, ``hyper_parameters``,
    ``pytorch-lightning_version``) plus the model's registry name, so loading rebuilds
    the right class without the user naming it. Loading uses ``torch.load`` with
    ``weights_only=True``: a checkpoint can hold tensors and plain containers only, never
    pickled code. Checkpoints written by Lightning's ``ModelCheckpoint`` for these models
    load too. Saves are atomic, and versioned saves never overwrite a version.

    Takes the constructor arguments of ``FsspecVersionedDataset``: ``filepath`` is a
    ``.ckpt`` file, local or remote; ``load_args`` are ``map_location`` (default
    ``"cpu"``) and ``strict`` (default True: every weight in the file must match the
    model); ``save_args`` are reserved, since no options are needed to save.

    Examples:
        Using the YAML API:

        ```yaml
        model:
          type: omics_vae.datasets.LightningCheckpointDataset
          filepath: data/06_models/model.ckpt
          versioned: true
        ```
    """

    DEFAULT_LOAD_ARGS: ClassVar[dict[str, Any]] = {"map_location": "cpu", "strict": True}
    DEFAULT_SAVE_ARGS: ClassVar[dict[str, Any]] = {}

    def load(self) -> LightningModule:
        load_path = get_filepath_str(self._get_load_path(), self._protocol)
        with self._fs.open(load_path, mode="rb") as stream:
            raw = stream.read()
        checkpoint = read_checkpoint(
            raw, source=load_path, map_location=self._load_args["map_location"]
        )
        try:
            return model_from_checkpoint(
                checkpoint, source=load_path, strict=self._load_args["strict"]
            )
        except CheckpointError as exc:
            raise DatasetInputError(str(exc)) from None

    def save(self, data: LightningModule) -> None:
        payload = checkpoint_payload(data)
        save_path = get_filepath_str(self._get_save_path(), self._protocol)

        def write(path: Path) -> None:
            import torch  # noqa: PLC0415  (see checkpoint_payload)

            torch.save(payload, path)

        self._write_atomically(write, save_path)
        self._invalidate_cache()


def checkpoint_payload(model: LightningModule) -> dict[str, Any]:
    """What a checkpoint file holds: weights, plain hyperparameters and provenance."""
    # Imported here, as torch in save: the catalog creates this dataset for every run,
    # and a run that saves no model needs neither.
    import lightning  # noqa: PLC0415

    name = getattr(model, "registry_name", None)
    if not name:
        raise DatasetInputError(
            f"{type(model).__name__} has no registry_name; only models registered in "
            "omics_vae.models.registry can be saved as checkpoints."
        )
    return {
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        "hyper_parameters": _plain(dict(model.hparams)),
        MODEL_NAME_KEY: name,
        "pytorch-lightning_version": lightning.__version__,
        "omics_vae_version": omics_vae.__version__,
    }


def read_checkpoint(raw: bytes, *, source: str, map_location: Any = "cpu") -> dict[str, Any]:
    """Deserialise checkpoint bytes without unpickling code, or explain what is wrong."""
    try:
        checkpoint = read_checkpoint_file(raw, name=source, map_location=map_location)
    except CheckpointError as exc:
        raise DatasetInputError(
            f"{exc} Train again, or load an earlier version with --load-versions."
        ) from None
    missing = [key for key in ("state_dict", "hyper_parameters") if key not in checkpoint]
    if missing:
        raise DatasetInputError(
            f"Cannot load checkpoint '{source}': it is not a Lightning checkpoint "
            f"(missing {missing})."
        )
    return checkpoint


def _plain(value: Any) -> Any:
    """Hyperparameters as plain containers, which ``weights_only`` loading accepts."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise DatasetInputError(
        f"Hyperparameter value {value!r} of type {type(value).__name__} is not a plain "
        "value; models must take JSON-like hyperparameters to be checkpointed."
    )


__all__ = ["LightningCheckpointDataset", "checkpoint_payload"]
