"""What the simulated datasets share: their catalog arguments are those of a simulation
function, checked and completed against its signature, so they are declared only there."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from kedro.io.core import DatasetError


def bind_simulation_args(
    simulate: Callable[..., Any], args: dict[str, Any], dataset: str
) -> dict[str, Any]:
    """``args`` as keyword arguments of ``simulate``, its defaults filled in.

    Raises:
        DatasetError: naming an argument that ``simulate`` does not take.
    """
    try:
        bound = inspect.signature(simulate).bind(**args)
    except TypeError as exc:
        raise DatasetError(f"{dataset}: {exc}") from None
    bound.apply_defaults()
    return dict(bound.arguments)
