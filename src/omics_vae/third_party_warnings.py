"""Third-party warnings a user of the project cannot act on, quieted by name.

Each entry is one warning that a dependency raises about another dependency (or about
itself) on every run. They only bury the project's own messages, so ``settings.py``
quiets exactly these, by category, message and the package that raises them, before the
hooks import MLflow. Every other warning, including any new one these packages start to
raise, is still shown. Remove an entry when the package that raises it is fixed.

Two places are needed: Python's warning filters, and a filter on the ``py.warnings``
logger through which Kedro's logging shows warnings, because MLflow raises some of its
warnings under ``warnings.simplefilter("once")``, which outranks any filter set before.
(Kedro's logging configuration accepts no filter classes of a project's own, so the
logger filter is added here rather than in ``conf/logging.yml``.)
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import NamedTuple


class QuietedWarning(NamedTuple):
    category: type[Warning]
    message: str  # a regular expression matched at the start of the message
    packages: tuple[str, ...]  # the top-level packages that raise it
    why: str


QUIETED = (
    QuietedWarning(
        UserWarning,
        r"register_new_resolver\(\) is deprecated",
        ("kedro", "kedro_mlflow"),
        "Kedro's config loader and kedro-mlflow's hook call OmegaConf's old name.",
    ),
    QuietedWarning(
        UserWarning,
        r"(\x1b\[\d+m)?Add type hints to the `predict` method",
        ("mlflow",),
        "MLflow inspects kedro-mlflow's pipeline model class when it is imported.",
    ),
    QuietedWarning(
        FutureWarning,
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        ("lightning",),
        "Lightning builds torch's deprecated LeafSpec on every training run.",
    ),
)


class QuietedWarningsFilter(logging.Filter):
    """Drops the ``py.warnings`` records of the ``QUIETED`` warnings."""

    def __init__(self) -> None:
        super().__init__()
        # logging.captureWarnings logs "<file>:<line>: <Category>: <message>".
        self._patterns = [
            re.compile(
                rf"[/\\]({'|'.join(quieted.packages)})[/\\].*?:\d+: "
                rf"{quieted.category.__name__}: {quieted.message}",
                re.IGNORECASE,
            )
            for quieted in QUIETED
        ]

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(pattern.search(text) for pattern in self._patterns)


def quiet_third_party_warnings() -> None:
    """Quiet the ``QUIETED`` warnings in this process; others are shown as before."""
    for quieted in QUIETED:
        warnings.filterwarnings(
            "ignore",
            message=quieted.message,
            category=quieted.category,
            module=rf"({'|'.join(quieted.packages)})\.",
        )
    logger = logging.getLogger("py.warnings")
    if not any(isinstance(existing, QuietedWarningsFilter) for existing in logger.filters):
        logger.addFilter(QuietedWarningsFilter())
