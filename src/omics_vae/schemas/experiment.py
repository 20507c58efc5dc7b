"""Schema of ``conf/base/experiment.yml``: what the experiment is, for the people who
read its runs (as the meta.yaml of a Hydra-style experiment folder says it)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from omics_vae.params import StrictModel


class ExperimentDescription(StrictModel):
    description: str = Field(
        "", description="What the experiment studies; MLflow shows it as its description."
    )
    authors: list[str] = Field(default_factory=list, description="Who runs it.")
    version: str = Field("1", description="Version of the experiment's design.")
    kind: Literal["custom_model_development", "genai_development"] = Field(
        "custom_model_development",
        description="The MLflow UI's view of the experiment (mlflow.experimentKind).",
    )

    def experiment_tags(self) -> dict[str, str]:
        """Tags of the MLflow experiment: its UI kind, description, authors, version."""
        return {
            "mlflow.experimentKind": self.kind,
            "mlflow.note.content": self.description,
            "omics_vae.authors": ", ".join(self.authors),
            "omics_vae.experiment_version": self.version,
        }

    def run_tags(self, name: str) -> dict[str, str]:
        """Tags of each run: which experiment, which version of it, by whom."""
        return {
            "experiment.name": name,
            "experiment.version": self.version,
            "experiment.authors": ", ".join(self.authors),
        }

    def record(self, name: str) -> dict[str, object]:
        """The ``experiment`` entry of model cards and embedding info records."""
        return {"name": name, **self.model_dump(exclude={"kind"})}
