"""Reading checkpoint files safely, and the identity a training checkpoint carries.

Every checkpoint the project reads (a saved model, a Lightning run resumed) goes through
``read_checkpoint``: ``torch.load`` with ``weights_only=True`` passed explicitly, so a
file holding pickled objects is refused even when ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is
set in the environment (that variable only changes loads that leave the flag out).

A training run stores what it trains on and with which parameters (its *identity*: a
JSON-able record whose hash is the training fingerprint) in each of its checkpoints, so a
resumed run can prove that it continues the same training.
"""

from __future__ import annotations

import io
import json
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omics_vae.errors import ProjectError
from omics_vae.models.registry import get_model_class

if TYPE_CHECKING:
    from omics_vae.models.base import BaseVAE

IDENTITY_KEY = "omics_vae_identity"
# Where the registry name sits in the checkpoint, beside Lightning's own keys.
MODEL_NAME_KEY = "omics_vae_model"


class CheckpointError(ProjectError, ValueError):
    """A checkpoint file cannot be read, or is not the checkpoint it should be.

    Attributes:
        path: The file, when the error is about one.
        problem: What is wrong with it, in a few words, for callers that add the fix.
    """

    def __init__(self, message: str, *, path: str | None = None, problem: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.problem = problem or message


# The global a weights-only load refused, in torch's message.
_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def read_checkpoint(
    source: str | Path | bytes, *, name: str | None = None, map_location: Any = "cpu"
) -> dict[str, Any]:
    """Deserialise a checkpoint (a path or its bytes) without unpickling code.

    Args:
        source: The file's path, or its contents.
        name: How to call the file in messages (defaults to the path).
        map_location: Where tensors are placed.

    Raises:
        CheckpointError: The file holds pickled objects, is truncated or corrupt, or is
            not a dictionary.
    """
    # Imported here: the datasets that read checkpoints are created with every catalog.
    import torch  # noqa: PLC0415

    name = name or str(source)
    try:
        if isinstance(source, bytes):
            checkpoint = torch.load(
                io.BytesIO(source), map_location=map_location, weights_only=True
            )
        else:
            checkpoint = torch.load(
                str(source), map_location=map_location, weights_only=True, mmap=True
            )
    except pickle.UnpicklingError as exc:
        problem = (
            f"it holds {_pickled_objects(exc)}; checkpoints are read as tensors only and "
            "never unpickled"
        )
        raise CheckpointError(
            f"Cannot load checkpoint '{name}': {problem}.", path=name, problem=problem
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError):
        # torch's own words (an errno, a zip or mmap detail) do not help the reader.
        problem = "the file is corrupt or truncated, as an interrupted save leaves it"
        raise CheckpointError(
            f"Cannot load checkpoint '{name}': {problem}.", path=name, problem=problem
        ) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"Cannot load checkpoint '{name}': it is not a dictionary.")
    return checkpoint


def model_from_checkpoint(
    checkpoint: dict[str, Any], *, source: str, strict: bool = True
) -> BaseVAE:
    """Rebuild the registered model class from a checkpoint dictionary."""
    hparams = dict(checkpoint["hyper_parameters"])
    name = checkpoint.get(MODEL_NAME_KEY) or hparams.get("registry_name")
    if not name:
        raise CheckpointError(
            f"Cannot load checkpoint '{source}': it does not say which model it holds "
            f"(no '{MODEL_NAME_KEY}' key)."
        )
    try:
        model_class = get_model_class(name)
    except KeyError as exc:
        raise CheckpointError(f"Cannot load checkpoint '{source}': {exc}") from exc
    model = model_class(**model_class.hyperparameter_class.of_checkpoint(hparams))
    try:
        model.load_state_dict(checkpoint["state_dict"], strict=strict)
    except RuntimeError as exc:
        raise CheckpointError(
            f"Cannot load checkpoint '{source}': its weights do not fit model '{name}' "
            f"built from its own hyperparameters ({exc})."
        ) from exc
    return model.eval()


def load_model_file(path: str | Path, *, name: str | None = None) -> BaseVAE:
    """The registered model saved at ``path`` (a ``LightningCheckpointDataset`` file),
    read tensors-only.

    Raises:
        CheckpointError: The file cannot be read or does not hold a registered model.
    """
    checkpoint = read_checkpoint(path, name=name)
    if "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise CheckpointError(
            f"Cannot load checkpoint '{name or path}': it is not a Lightning checkpoint."
        )
    return model_from_checkpoint(checkpoint, source=str(name or path))


def checkpoint_identity(checkpoint: Mapping[str, Any]) -> dict[str, Any] | None:
    """The identity record a training checkpoint carries, if any."""
    stored = checkpoint.get(IDENTITY_KEY)
    return json.loads(stored) if isinstance(stored, str) else None


def encode_identity(identity: Mapping[str, Any]) -> str:
    """The identity as stored in checkpoints: canonical JSON (a plain string loads under
    ``weights_only``)."""
    return json.dumps(identity, sort_keys=True, default=str)


def identity_differences(
    stored: Mapping[str, Any] | None, current: Mapping[str, Any], limit: int = 5
) -> list[str]:
    """The dotted keys whose values differ, as ``key: <stored> here, <current> now``."""
    if stored is None:
        return ["the checkpoint carries no record of its data and parameters"]
    flat_stored, flat_current = _flatten(stored), _flatten(current)
    keys = sorted(set(flat_stored) | set(flat_current))
    differences = [
        f"{key}: {_short(flat_stored.get(key))} in the checkpoint, "
        f"{_short(flat_current.get(key))} now"
        for key in keys
        if flat_stored.get(key) != flat_current.get(key)
    ]
    if len(differences) > limit:
        differences = [*differences[:limit], f"... and {len(differences) - limit} more"]
    return differences


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{path}."))
        else:
            flat[path] = json.loads(json.dumps(value, default=str))
    return flat


def _short(value: Any, width: int = 40) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= width else f"{text[: width - 3]}..."


def _pickled_objects(exc: pickle.UnpicklingError) -> str:
    """What a weights-only load refused, without torch's advice to unpickle it anyway."""
    refused = _REFUSED_GLOBAL.search(str(exc))
    if refused:
        return f"a pickled Python object ({refused.group(1)})"
    return "pickled Python objects, not only tensors and plain values"
