"""Package exports imported on first use (PEP 562), so importing a package is cheap.

``models`` and ``datasets`` export classes whose modules import torch and Lightning;
the configuration, the catalog and every ``kedro`` command import those packages, and
only some of them need those classes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, where: Mapping[str, str]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``__all__``, ``__getattr__`` and ``__dir__`` for ``package``.

    Args:
        package: The package's ``__name__``.
        where: Each exported name and the submodule that defines it.
    """
    names = sorted(where)

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    def __dir__() -> list[str]:
        return names

    return names, __getattr__, __dir__
