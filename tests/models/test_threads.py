"""The default number of torch threads: the free cores, or what the user set."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from omics_vae.models import threads
from omics_vae.models.threads import busy_cores, default_threads, usable_cores


@pytest.fixture(autouse=True)
def no_thread_variable(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def test_the_default_leaves_out_the_cores_other_processes_keep_busy(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    assert default_threads(busy=0.2) == 4
    assert default_threads(busy=1.1) == 3  # one core taken by another job
    assert default_threads(busy=3.9) == 1
    assert default_threads(busy=12.0) == 1  # never fewer than one


def test_a_thread_count_the_user_set_is_kept(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads(busy=5.0) == 3


def test_usable_cores_are_the_cores_this_process_may_run_on():
    assert usable_cores() == len(os.sched_getaffinity(0))


def test_a_process_spinning_on_a_core_is_counted_as_busy():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # started and spinning
        assert busy_cores(window_s=1.0) >= 0.5
    finally:
        spinner.kill()
        spinner.wait()
