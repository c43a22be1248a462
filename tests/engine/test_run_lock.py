"""One process per run directory (issue 23, item 4): the lock refuses a live owner and takes over a dead one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from sslkit.config import ConfigError
from sslkit.engine.run_lock import LOCK_NAME, RunLock, process_start_time


def _write_owner(run_dir, **owner):
    (run_dir / LOCK_NAME).write_text(json.dumps({"since": "then", **owner}))


@pytest.fixture
def live_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_lock_is_created_and_removed(tmp_path):
    with RunLock(tmp_path):
        owner = json.loads((tmp_path / LOCK_NAME).read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        assert owner["started"] == process_start_time(os.getpid())
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_live_owner_is_refused_by_name_and_its_lock_kept(tmp_path, live_process):
    _write_owner(tmp_path, host=socket.gethostname(), pid=live_process.pid,
                 started=process_start_time(live_process.pid))
    before = (tmp_path / LOCK_NAME).read_text()
    with pytest.raises(ConfigError, match=f"in use by process {live_process.pid}"):
        RunLock(tmp_path).acquire()
    assert (tmp_path / LOCK_NAME).read_text() == before


def test_a_second_lock_in_the_same_process_is_refused(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(ConfigError, match="in use"):
            RunLock(tmp_path).acquire()


@pytest.mark.parametrize("case", ["dead pid", "reused pid", "same slurm job", "garbage file"])
def test_a_stale_lock_is_taken_over(tmp_path, monkeypatch, case):
    if case == "dead pid":
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc.wait()
        _write_owner(tmp_path, host=socket.gethostname(), pid=proc.pid, started="1")
    elif case == "reused pid":  # our own pid, but the recorded process started at another time
        _write_owner(tmp_path, host=socket.gethostname(), pid=os.getpid(), started="0")
    elif case == "same slurm job":  # a requeued job: the same id, another node
        monkeypatch.setenv("SLURM_JOB_ID", "4242")
        _write_owner(tmp_path, host="other-node", pid=1, started="5", slurm_job="4242")
    else:
        (tmp_path / LOCK_NAME).write_text('{"host": "x", "pi')  # owner killed while writing it
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_another_hosts_lock_is_refused_naming_the_file_to_delete(tmp_path):
    _write_owner(tmp_path, host="elsewhere", pid=1, started="5")
    with pytest.raises(ConfigError) as err:
        RunLock(tmp_path).acquire()
    assert "elsewhere" in str(err.value) and f"delete {tmp_path / LOCK_NAME}" in str(err.value)


def test_other_ranks_do_not_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    with RunLock(tmp_path):
        assert not (tmp_path / LOCK_NAME).exists()
