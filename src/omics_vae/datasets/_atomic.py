"""Atomic writes shared by the project's file datasets.

A file is written under a hidden temporary name and renamed into place, so an
interrupted save never leaves a truncated file where a good one was, and a versioned
save never replaces an existing version.

The temporary ("partial") file is named after its writer's host and process, so a
later save can tell the partial of a killed writer, which it removes, from that of a
writer still running, which it keeps.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import fsspec
from kedro.io.core import DatasetError

WriteFile = Callable[[Path], None]

logger = logging.getLogger(__name__)

_PARTIAL_SUFFIX = ".partial"
# Partials named before writers were recorded carry only a random token; one untouched
# this long is taken as abandoned, since a live writer keeps its file's mtime fresh.
LEGACY_PARTIAL_MAX_AGE_S = 3600.0


def write_local_atomically(write: WriteFile, destination: Path, *, overwrite: bool) -> None:
    """Call ``write(path)`` on a temporary file, then move it to ``destination``.

    Partial files that killed writers left beside ``destination`` are removed first.

    Args:
        write: Writes the whole file at the path it is given.
        destination: Final local path.
        overwrite: Whether an existing file may be replaced (False for versioned saves,
            whose sibling version folders are also cleared of orphan partial files).
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphan_partials(destination, versioned=not overwrite)
    # A hidden name in the destination folder, so the final rename cannot cross
    # filesystems and a version folder's glob never matches a half-written file.
    partial = destination.with_name(_partial_name(destination.name))
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
    partial = f"{parent}/{_partial_name(name)}"
    try:
        with tempfile.TemporaryDirectory(prefix="omics-vae-upload-") as upload_dir:
            local_path = Path(upload_dir) / name
            write(local_path)
            fs.put_file(str(local_path), partial)
        fs.mv(partial, save_path)
    finally:
        if fs.exists(partial):
            fs.rm_file(partial)


def _partial_name(name: str) -> str:
    """Hidden temporary name for a file ``name`` written by this process."""
    return f".{name}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex}{_PARTIAL_SUFFIX}"


def _remove_orphan_partials(destination: Path, *, versioned: bool) -> None:
    """Remove the partial files of ``destination``'s name that no live writer owns.

    A versioned save writes into a fresh version folder, so the partials of earlier
    interrupted saves lie in its sibling version folders: all of them are searched.
    """
    folders = _version_folders(destination) if versioned else [destination.parent]
    for folder in folders:
        for path in _partials_in(folder, destination.name):
            reason = _why_orphan(path, destination.name)
            if reason is not None:
                _remove_orphan(path, reason)


def _version_folders(destination: Path) -> list[Path]:
    try:
        return [child for child in destination.parent.parent.iterdir() if child.is_dir()]
    except OSError:
        return [destination.parent]


def _partials_in(folder: Path, name: str) -> list[Path]:
    prefix = f".{name}."
    try:
        return [
            path
            for path in folder.iterdir()
            if path.name.startswith(prefix) and path.name.endswith(_PARTIAL_SUFFIX)
        ]
    except OSError:  # a folder another process removed or made unreadable meanwhile
        return []


def _why_orphan(path: Path, name: str) -> str | None:
    """Why nobody will finish the partial file ``path``, or None while someone may."""
    writer = path.name[len(f".{name}.") : -len(_PARTIAL_SUFFIX)]
    fields = writer.rsplit(".", 2)
    if len(fields) == 1:
        return _why_legacy_orphan(path, token=fields[0])
    if len(fields) != 3:
        return None
    host, pid, token = fields
    if host != socket.gethostname() or not pid.isdigit() or not _is_token(token):
        return None
    if process_is_alive(int(pid)):
        return None
    return f"its writer, process {pid} on this host, no longer runs"


def _why_legacy_orphan(path: Path, token: str) -> str | None:
    if not _is_token(token):
        return None
    try:
        age_s = time.time() - path.stat().st_mtime
    except OSError:  # already removed by a concurrent save
        return None
    if age_s < LEGACY_PARTIAL_MAX_AGE_S:
        return None
    return f"it names no writer and was last modified {age_s / 3600:.1f} h ago"


def _is_token(text: str) -> bool:
    return len(text) == 32 and all(char in "0123456789abcdef" for char in text)


def process_is_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs."""
    if os.name == "nt":
        # On Windows os.kill terminates the process instead of probing it.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, under another user
        return True
    return True


def _remove_orphan(path: Path, reason: str) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        logger.warning("Could not remove the orphan partial file '%s' (%s): %s.", path, reason, exc)
        return
    logger.info("Removed '%s', a partial file of an interrupted save: %s.", path, reason)


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
