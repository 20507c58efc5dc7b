"""Atomic writes shared by the project's file datasets.

A file is written under a hidden temporary name and renamed into place, so an
interrupted save never leaves a truncated file where a good one was, and a versioned
save never replaces an existing version.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import fsspec
from kedro.io.core import DatasetError

WriteFile = Callable[[Path], None]


def write_local_atomically(write: WriteFile, destination: Path, *, overwrite: bool) -> None:
    """Call ``write(path)`` on a temporary file, then move it to ``destination``.

    Args:
        write: Writes the whole file at the path it is given.
        destination: Final local path.
        overwrite: Whether an existing file may be replaced (False for versioned saves).
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    # A hidden name in the destination folder, so the final rename cannot cross
    # filesystems and a version folder's glob never matches a half-written file.
    partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.partial")
    try:
        write(partial)
        if overwrite:
            os.replace(partial, destination)
        else:
            _move_without_overwriting(partial, destination)
    finally:
        partial.unlink(missing_ok=True)


def write_remote_atomically(
    write: WriteFile, fs: fsspec.AbstractFileSystem, save_path: str
) -> None:
    """Write locally, upload under a temporary name, then move into place on ``fs``."""
    parent, name = save_path.rsplit("/", 1)
    partial = f"{parent}/.{name}.{uuid.uuid4().hex}.partial"
    try:
        with tempfile.TemporaryDirectory(prefix="omics-vae-upload-") as upload_dir:
            local_path = Path(upload_dir) / name
            write(local_path)
            fs.put_file(str(local_path), partial)
        fs.mv(partial, save_path)
    finally:
        if fs.exists(partial):
            fs.rm_file(partial)


def _move_without_overwriting(source: Path, destination: Path) -> None:
    """Rename ``source`` to ``destination``, refusing to replace an existing file.

    A hard link fails atomically when the destination exists, which closes the gap
    between Kedro's "version must not exist" check and the write.
    """
    try:
        os.link(source, destination)
    except FileExistsError as exc:
        raise _version_exists_error(destination) from exc
    except OSError:
        # Filesystems without hard links: check, then rename.
        if destination.exists():
            raise _version_exists_error(destination) from None
        os.replace(source, destination)


def _version_exists_error(destination: Path) -> DatasetError:
    return DatasetError(
        f"Save path '{destination}' already exists; a versioned save never overwrites "
        "an existing version."
    )
