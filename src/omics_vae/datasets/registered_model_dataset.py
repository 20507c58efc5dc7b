"""``RegisteredModelDataset`` loads a trained model, or its card, from the MLflow store."""

from __future__ import annotations

from typing import Any, Literal

from kedro.io import AbstractDataset

from omics_vae.datasets.errors import DatasetInputError
from omics_vae.runs import load_model_and_card

Part = Literal["model", "card"]


class RegisteredModelDataset(AbstractDataset[None, Any]):
    """``RegisteredModelDataset`` reads a model from MLflow's registry or from a run.

    Read-only: models enter the store through training runs and
    ``omics_vae.runs.register_model``. Loading goes through
    ``omics_vae.runs.load_model_and_card`` (the one place that reads the registry): the
    checkpoint is read with ``models.checkpoints.load_model_file`` (tensors only, never pickled
    code). The store is the session's MLflow tracking URI (kedro-mlflow sets it from
    ``conf/<env>/mlflow.yml``) unless ``tracking_uri`` is given. The card gains
    ``model_uri``, so what is made with the model can name where it came from.

    The embedding pipeline gets these in place of the catalog's ``model`` and
    ``model_card`` when ``embedding.model_uri`` is set (``omics_vae.hooks.RegisteredModelHooks``).

    Examples:
        Using the YAML API:

        ```yaml
        champion:
          type: omics_vae.datasets.RegisteredModelDataset
          model_uri: models:/invae@champion

        champion_card:
          type: omics_vae.datasets.RegisteredModelDataset
          model_uri: models:/invae@champion
          part: card
        ```

        Using the Python API:

        ```python
        from omics_vae.datasets import RegisteredModelDataset

        model = RegisteredModelDataset(model_uri="models:/invae@champion").load()
        ```
    """

    def __init__(
        self,
        *,
        model_uri: str,
        part: Part = "model",
        tracking_uri: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Creates a new instance of ``RegisteredModelDataset``.

        Args:
            model_uri: ``models:/<name>@<alias>``, ``models:/<name>/<version>``,
                ``runs:/<run id>/model`` or a run id.
            part: ``model`` (the trained model, in eval mode on the CPU) or ``card``
                (its model card, a dict).
            tracking_uri: The MLflow store; None finds it as ``omics_vae.runs`` does.
            metadata: Arbitrary metadata, ignored by Kedro (used by kedro-viz).
        """
        if part not in ("model", "card"):
            raise DatasetInputError(f"part must be 'model' or 'card', not '{part}'.")
        self._model_uri = model_uri
        self._part = part
        self._tracking_uri = tracking_uri
        self.metadata = metadata

    @property
    def model_uri(self) -> str:
        """The URI this dataset loads."""
        return self._model_uri

    def load(self) -> Any:
        model, card = load_model_and_card(self._model_uri, tracking_uri=self._tracking_uri)
        if self._part == "model":
            return model
        return {**card, "model_uri": self._model_uri}

    def save(self, data: None) -> None:
        raise DatasetInputError(
            f"RegisteredModelDataset is read-only: it loads '{self._model_uri}' from MLflow. "
            "Register a trained model with omics_vae.runs.register_model."
        )

    def _describe(self) -> dict[str, Any]:
        return {"model_uri": self._model_uri, "part": self._part}
