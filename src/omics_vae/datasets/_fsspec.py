"""What the project's file datasets share about their fsspec filesystem."""

from __future__ import annotations

import os
from copy import deepcopy
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, TypeVar

import fsspec
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)

from omics_vae.datasets._atomic import WriteFile, write_local_atomically, write_remote_atomically

_DI = TypeVar("_DI")
_DO = TypeVar("_DO")


class FsspecVersionedDataset(AbstractVersionedDataset[_DI, _DO]):
    """A versioned dataset on an fsspec filesystem (``self._fs``, ``self._protocol``):
    the kedro-datasets constructor, existence of the version to load, atomic saves, and
    cache invalidation after saves and releases.

    Subclasses set ``DEFAULT_LOAD_ARGS`` and ``DEFAULT_SAVE_ARGS``, and may override
    ``_make_filesystem`` (how the filesystem is built from its storage options) and
    ``_check_args`` (validation once everything is set).
    """

    DEFAULT_LOAD_ARGS: ClassVar[dict[str, Any]] = {}
    DEFAULT_SAVE_ARGS: ClassVar[dict[str, Any]] = {}

    _fs: Any
    _protocol: str

    def __init__(
        self,
        *,
        filepath: str | os.PathLike,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        version: Version | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Creates a new instance pointing to ``filepath``.

        Args:
            filepath: Path to the file, optionally prefixed with an fsspec protocol such
                as ``s3://`` or ``https://``; without one, the local filesystem is used.
            load_args: Options for loading, over the class's ``DEFAULT_LOAD_ARGS``.
            save_args: Options for saving, over the class's ``DEFAULT_SAVE_ARGS``.
            version: If given, a ``kedro.io.core.Version``. If its ``load`` is None, the
                latest version is loaded; if its ``save`` is None, a save version is
                generated.
            credentials: Credentials for the underlying filesystem, e.g. ``{"key": ...,
                "secret": ...}`` for S3.
            fs_args: Extra arguments for the fsspec filesystem constructor.
            metadata: Any arbitrary metadata. Ignored by Kedro, but may be consumed by
                users or plugins such as kedro-viz.
        """
        protocol, path = get_protocol_and_path(filepath, version)
        storage_options = {**(deepcopy(credentials) or {}), **(deepcopy(fs_args) or {})}
        if protocol == "file":
            storage_options.setdefault("auto_mkdir", True)
        self._protocol = protocol
        self._fs = self._make_filesystem(protocol, storage_options)
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )
        self._load_args = {**self.DEFAULT_LOAD_ARGS, **(load_args or {})}
        self._save_args = {**self.DEFAULT_SAVE_ARGS, **(save_args or {})}
        self._check_args()

    def _make_filesystem(
        self, protocol: str, storage_options: dict[str, Any]
    ) -> fsspec.AbstractFileSystem:
        return fsspec.filesystem(protocol, **storage_options)

    def _check_args(self) -> None:
        """Raise ``DatasetError`` for arguments that cannot work together."""

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": self._filepath,
            "protocol": self._protocol,
            "load_args": self._load_args,
            "save_args": self._save_args,
            "version": self._version,
        }

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

    def _write_atomically(
        self, write: WriteFile, save_path: str, remote_fs: Any | None = None
    ) -> None:
        """Write ``save_path`` with ``write`` atomically: locally without replacing a
        version, or through ``remote_fs`` (default ``self._fs``) for remote files."""
        if self._protocol == "file":
            write_local_atomically(write, Path(save_path), overwrite=not self._version)
        else:
            write_remote_atomically(write, remote_fs or self._fs, save_path)
