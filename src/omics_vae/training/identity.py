"""What decides a trained model: the training identity and its hash, the fingerprint.

A training run's identity is a JSON-able record of the data it trains on (content hash,
the values of the covariate columns it is given, the processing record) and its effective
parameters; its hash is the *training fingerprint*, under which MLflow finds an identical
model (``omics_vae.store``), and the record itself travels in every checkpoint so that
a resumed run can prove it continues the same training.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from anndata import AnnData

import omics_vae
from omics_vae.data.fingerprint import fingerprint_values
from omics_vae.models.checkpoints import encode_identity
from omics_vae.schemas.training import FitParams

# Settings that change how a run goes, not what it learns.
OPERATIONAL_KEYS = (
    ("resume_from",),
    ("checkpoint_dir",),
    ("dry_run",),
    ("data",),
    ("trainer", "num_threads"),
    ("trainer", "enable_progress_bar"),
)


def training_identity(
    model_input: AnnData,
    data_fingerprint: str,
    config: FitParams,
    covariate_keys: Sequence[str] = (),
) -> dict[str, Any]:
    """Everything that decides a trained model, as a JSON-able record.

    Args:
        model_input: The processed data the model trains on (for its processing record
            and the covariate columns).
        data_fingerprint: Its content hash (``fingerprint_anndata``: cells, genes, split
            and the values the model reads).
        config: The validated training block (its effective parameters count: the
            chosen model's hyperparameters with their defaults, no other model's).
        covariate_keys: The obs columns the model is given (labels, batches): relabelled
            cells with the same counts train another model.
    """
    # The chosen model's hyperparameters resolved, so leaving a default to the model's
    # declaration and writing it out are the same model.
    parameters = config.effective_parameters()
    for path in OPERATIONAL_KEYS:
        _drop(parameters, path)
    return {
        "data": data_fingerprint,
        "covariates": {key: fingerprint_values(model_input.obs[key]) for key in covariate_keys},
        # The processing record of either family (keys differ; absent ones are empty).
        "processing": {
            key: _plain(model_input.uns[key].get("params", model_input.uns[key]))
            for key in ("data_processing", "paired_processing")
            if key in model_input.uns
        },
        "training": parameters,
        "omics_vae": omics_vae.__version__,
    }


def fingerprint_of(identity: dict[str, Any]) -> str:
    """The training fingerprint: a short hash of a training identity."""
    return hashlib.blake2b(encode_identity(identity).encode(), digest_size=10).hexdigest()


def training_fingerprint(
    model_input: AnnData,
    data_fingerprint: str,
    config: FitParams,
    covariate_keys: Sequence[str] = (),
) -> str:
    """A hash of everything that decides a trained model (see ``training_identity``)."""
    return fingerprint_of(training_identity(model_input, data_fingerprint, config, covariate_keys))


def _plain(value: Any) -> Any:
    """A processing record as JSON would give it back (arrays become lists), so a record
    read from a checkpoint compares equal to one read from the data."""
    return json.loads(json.dumps(value, sort_keys=True, default=_jsonable))


def _jsonable(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _drop(tree: dict[str, Any], path: tuple[str, ...]) -> None:
    *parents, leaf = path
    for part in parents:
        tree = tree.get(part)
        if not isinstance(tree, dict):
            return
    tree.pop(leaf, None)
