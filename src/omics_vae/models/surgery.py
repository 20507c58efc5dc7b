"""Mapping new cells onto a trained model: architecture surgery for batches it has never
seen, as scArches does (Lotfollahi et al., 2022).

A query brings batches (technical categories) the reference model was not trained on.
``with_query_batches`` returns a copy of the model whose technical one-hot has a column
for each new category. Every weight that reads the one-hot (the encoder's first layer,
the decoder's injected layers, the technical prior) gains zero-initialised columns, and
everything else is copied. ``train_only_new_batch_columns`` then lets an optimiser
change those columns and nothing else: gradients are masked, batch-norm statistics are
frozen, and weight decay must be 0. The reference cells therefore embed exactly as
before, and the fine-tuning fits only how the new batches differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from omics_vae.models.base import BaseVAE


@dataclass(frozen=True)
class QueryBatches:
    """The technical categories a query adds to a model.

    Attributes:
        new: ``{obs key: [new categories]}``, in the order they are appended.
        old_width: Width of the model's technical one-hot before surgery.
        new_columns: Positions of the new categories' columns in the extended one-hot.
        old_columns: Position of each old column in the extended one-hot.
    """

    new: Mapping[str, Sequence[str]]
    old_width: int
    new_columns: tuple[int, ...]
    old_columns: tuple[int, ...]

    @property
    def any(self) -> bool:
        """Whether the query brings any new category."""
        return bool(self.new_columns)


def query_batches(categories: Mapping[str, Sequence[str]], obs: pd.DataFrame) -> QueryBatches:
    """The categories of ``obs`` that ``categories`` (a model's technical encoder) lacks.

    Args:
        categories: ``{obs key: [categories]}`` the model was trained with.
        obs: The query's cell annotations, holding every key.
    """
    new = {
        key: sorted(set(obs[key].astype(str)) - set(labels)) for key, labels in categories.items()
    }
    old_columns, new_columns = [], []
    position = 0
    for key, labels in categories.items():
        old_columns.extend(range(position, position + len(labels)))
        position += len(labels)
        new_columns.extend(range(position, position + len(new[key])))
        position += len(new[key])
    return QueryBatches(
        new={key: added for key, added in new.items() if added},
        old_width=sum(len(labels) for labels in categories.values()),
        new_columns=tuple(new_columns),
        old_columns=tuple(old_columns),
    )


def with_query_batches(model: BaseVAE, batches: QueryBatches) -> tuple[BaseVAE, list[str]]:
    """A copy of ``model`` with one-hot columns for the query's new categories.

    Args:
        model: The trained reference model.
        batches: ``query_batches`` of its technical categories and the query's obs.

    Returns:
        ``(extended model, names of its parameters that gained columns)``. The model
        gives the reference cells the same outputs as ``model``.
    """
    categories = dict(model.hparams["tech_categories"])
    extended_categories = {
        key: [*labels, *batches.new.get(key, [])] for key, labels in categories.items()
    }
    hparams = {**model.hparams, "tech_categories": extended_categories}
    extended = type(model)(**hparams)
    old_state = model.state_dict()
    state = extended.state_dict()
    widened = []
    new_width = batches.old_width + len(batches.new_columns)
    for name, value in state.items():
        old = old_state[name]
        if old.shape == value.shape:
            state[name] = old.clone()
            continue
        # The one-hot is always the last block of a layer's input (MLP concatenates
        # [features, covariates]; an encoder reading the label puts it before the batch).
        if old.dim() != 2 or value.shape[1] - old.shape[1] != new_width - batches.old_width:
            raise ValueError(f"cannot widen {name} from {tuple(old.shape)} to {tuple(value.shape)}")
        features = old.shape[1] - batches.old_width
        widened_value = torch.zeros_like(value)
        widened_value[:, :features] = old[:, :features]
        widened_value[:, [features + c for c in batches.old_columns]] = old[:, features:]
        state[name] = widened_value
        widened.append(name)
    extended.load_state_dict(state)
    return extended, widened


def train_only_new_batch_columns(
    model: BaseVAE, widened: Sequence[str], batches: QueryBatches
) -> tuple[str, ...]:
    """Let training change only the new batch columns of the widened weights.

    Every other gradient is masked to zero and batch-norm running statistics stop
    updating, so an optimiser without weight decay leaves the reference model intact.

    Returns:
        The named parts that hold widened weights (the ones to train).
    """
    parameters = dict(model.named_parameters())
    for name, parameter in parameters.items():
        mask = torch.zeros_like(parameter)
        if name in widened:
            features = parameter.shape[1] - batches.old_width - len(batches.new_columns)
            mask[:, [features + c for c in batches.new_columns]] = 1.0
        parameter.register_hook(lambda grad, mask=mask: grad * mask)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.0
    return tuple(
        part
        for part in model.module.named_parts()
        if any(name.startswith(f"module.{part}.") for name in widened)
    )
