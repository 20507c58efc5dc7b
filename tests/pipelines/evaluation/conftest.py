"""The tiny embeddings and processed data of the evaluation library's tests."""

from tests.evaluation.conftest import (  # noqa: F401 (fixtures)
    embeddings,
    evaluation_cells,
    model_input,
    parameters,
)
