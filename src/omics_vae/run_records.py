"""What a run leaves behind when it does not finish: its MLflow runs and its outputs.

Kedro-free. A process that is killed (SIGKILL, a machine that goes down) cannot close its
MLflow runs, so each run records the process that owns it (host, PID and the process's
start time, which tells a reused PID apart); the next start closes the runs whose process
has ended. A run that fails part-way through a stage has saved some of that stage's
versioned outputs and not others; those are set aside (renamed, never deleted) so the
latest versions of every dataset still come from one finished stage.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import RunStatus, ViewType
from mlflow.exceptions import MlflowException

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; stores are opened unguarded there
    fcntl = None

logger = logging.getLogger(__name__)

HOST_TAG = "omics_vae.host"
PID_TAG = "omics_vae.pid"
PROCESS_START_TAG = "omics_vae.process_start"
CLOSED_TAG = "omics_vae.closed_at_next_start"
SET_ASIDE_SUFFIX = ".incomplete-run"


def process_tags() -> dict[str, str]:
    """Tags naming the current process, for a run it owns."""
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(os.getpid()),
        PROCESS_START_TAG: _process_start(os.getpid()) or "",
    }


def close_runs_of_ended_processes(client: mlflow.MlflowClient) -> list[str]:
    """Mark KILLED every RUNNING run owned by a process of this host that has ended.

    Runs of other hosts are left alone: whether their process lives cannot be seen here.

    Returns:
        The ids of the runs closed.
    """
    host = socket.gethostname()
    try:
        experiments = [e.experiment_id for e in client.search_experiments(ViewType.ALL)]
        runs = client.search_runs(
            experiments,
            filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'",
            run_view_type=ViewType.ALL,
        )
    except MlflowException as error:
        logger.warning("Could not look for runs left RUNNING by killed processes: %s", error)
        return []
    closed = []
    for run in runs:
        pid, started = run.data.tags.get(PID_TAG), run.data.tags.get(PROCESS_START_TAG)
        if pid is None or _process_lives(int(pid), started or None):
            continue
        client.set_tag(run.info.run_id, CLOSED_TAG, f"process {pid} on {host} had ended")
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
        closed.append(run.info.run_id)
    if closed:
        logger.info(
            "Marked %d MLflow run(s) KILLED: their process ended without closing them (%s).",
            len(closed),
            ", ".join(closed),
        )
    return closed


def _process_lives(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    # A live PID may be a new process that reuses the number.
    return started is None or _process_start(pid) in (None, started)


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), if it can be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from its end.
    return stat.rsplit(")", 1)[1].split()[19]


def incomplete_groups(
    expected: Mapping[Any, set[str]], saved: Mapping[str, Path]
) -> dict[Any, list[str]]:
    """The groups of outputs of which some, but not all, were saved.

    Args:
        expected: Per group (a stage), the names of its persisted versioned outputs.
        saved: Name → saved file of every versioned output saved in the run.
    """
    groups = {}
    for group, names in expected.items():
        done = sorted(name for name in names if name in saved)
        if done and len(done) < len(names):
            groups[group] = done
    return groups


def set_aside(paths: Iterable[Path]) -> list[Path]:
    """Rename saved version files so that they are no longer any dataset's latest version.

    The file keeps its folder and gets a suffix: nothing is deleted, and Kedro's search
    for the latest version (``<dataset>/*/<file name>``) no longer matches it.
    """
    moved = []
    for path in paths:
        target = path.with_name(path.name + SET_ASIDE_SUFFIX)
        if path.exists():
            path.rename(target)
            moved.append(target)
    return moved


def variant_fingerprint(training_fingerprint: str, block: Mapping[str, Any]) -> str:
    """A hash of everything that decides a sweep variant's results: its trained model
    (by training fingerprint) and the parameters of its other stages."""
    record = {"training": training_fingerprint, "parameters": block}
    encoded = json.dumps(record, sort_keys=True, default=str).encode()
    return hashlib.blake2b(encoded, digest_size=10).hexdigest()


SQLITE_PREFIX = "sqlite:///"


def absolute_sqlite_uri(uri: str, root: Path) -> str:
    """``sqlite:///mlflow.db`` made absolute against ``root``; other URIs unchanged."""
    if not uri.startswith(SQLITE_PREFIX) or uri.startswith(SQLITE_PREFIX + "/"):
        return uri
    return f"{SQLITE_PREFIX}{(root / uri[len(SQLITE_PREFIX) :]).resolve()}"


@contextlib.contextmanager
def sqlite_store_lock(tracking_uri: str) -> Iterator[None]:
    """An exclusive lock beside a sqlite tracking store, held while a process opens it.

    MLflow creates and migrates a sqlite store's tables when a process first opens it;
    two runs doing that at once fail (``table _alembic_tmp_experiments already exists``).
    The lock (``<store>.lock``, advisory, POSIX) lets one open it while the other waits.
    Other stores (a tracking server) need none: the URI passes through unguarded.

    Args:
        tracking_uri: The store's URI; a sqlite one must be absolute
            (``absolute_sqlite_uri``).
    """
    if not tracking_uri.startswith(SQLITE_PREFIX) or fcntl is None:
        yield
        return
    lock = Path(tracking_uri[len(SQLITE_PREFIX) :] + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
