"""What the project's file datasets share about their fsspec filesystem."""

from __future__ import annotations

from typing import Any, TypeVar

from kedro.io.core import AbstractVersionedDataset, DatasetError, get_filepath_str

_DI = TypeVar("_DI")
_DO = TypeVar("_DO")


class FsspecVersionedDataset(AbstractVersionedDataset[_DI, _DO]):
    """A versioned dataset on an fsspec filesystem (``self._fs``, ``self._protocol``):
    existence of the version to load, and cache invalidation after saves and releases."""

    _fs: Any
    _protocol: str

    def _exists(self) -> bool:
        try:
            load_path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError:
            return False
        return self._fs.exists(load_path)

    def _release(self) -> None:
        super()._release()
        self._invalidate_cache()

    def _invalidate_cache(self) -> None:
        """Invalidate underlying filesystem caches."""
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))
