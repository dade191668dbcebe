"""Plan.save writes only regular files, through symlinks, and leaves no temporaries behind: not on an
exception, not on SIGTERM, and those of a killed writer (kill -9) are swept once they are old."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

import edgert
from edgert.errors import PlanError
from edgert.safe_write import STALE_SECONDS, resolve_target
from plan_models import small_cnn


@pytest.fixture(scope="module")
def plan():
    return edgert.build(small_cnn())


def _temporaries(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".edgert-"))


def test_fifo_is_refused_and_kept(plan, tmp_path):
    fifo = tmp_path / "pipe.plan"
    os.mkfifo(fifo)
    with pytest.raises(PlanError, match="FIFO.*regular file"):
        plan.save(fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert _temporaries(tmp_path) == []


def test_directory_is_refused(plan, tmp_path):
    with pytest.raises(PlanError, match="directory.*regular file"):
        plan.save(tmp_path)
    assert _temporaries(tmp_path) == []


def test_socket_is_refused(plan, tmp_path):
    path = tmp_path / "s.plan"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        with pytest.raises(PlanError, match="socket"):
            plan.save(path)
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        server.close()


@pytest.mark.parametrize("device", ["/dev/full", "/dev/null"])
def test_devices_are_refused(device):
    # Checked without trying to write: an older edgert running as root replaced /dev/full by a plan file.
    if not os.path.exists(device):
        pytest.skip(f"{device} does not exist here")
    with pytest.raises(PlanError, match="device"):
        resolve_target(device)


def test_symlink_is_written_through(plan, tmp_path):
    target = tmp_path / "v3.plan"
    target.write_bytes(b"old")
    link = tmp_path / "latest.plan"
    link.symlink_to(target.name)
    plan.save(link)
    assert link.is_symlink() and os.readlink(link) == target.name
    assert target.read_bytes() == plan.to_bytes()
    assert edgert.load(link).outputs[0].name == "y"


def test_dangling_symlink_creates_its_target(plan, tmp_path):
    link = tmp_path / "latest.plan"
    link.symlink_to("new.plan")
    plan.save(link)
    assert link.is_symlink() and (tmp_path / "new.plan").read_bytes() == plan.to_bytes()


def test_missing_directory_is_a_plan_error(plan, tmp_path):
    with pytest.raises(PlanError, match="does not exist"):
        plan.save(tmp_path / "nowhere" / "m.plan")


def test_disk_full_cleans_up(plan, tmp_path, monkeypatch):
    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(PlanError, match="No space left"):
        plan.save(tmp_path / "m.plan")
    assert list(tmp_path.iterdir()) == []


def test_sigterm_removes_the_temporary_and_terminates(plan, tmp_path):
    path = tmp_path / "m.plan"
    script = f"""
import os, signal
import edgert
plan = edgert.Plan.from_bytes(open({str(tmp_path / 'src.plan')!r}, 'rb').read())
os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGTERM)   # SIGTERM arrives mid-write
plan.save({str(path)!r})
print("survived")
"""
    (tmp_path / "src.plan").write_bytes(plan.to_bytes())
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGTERM, (done.returncode, done.stdout, done.stderr)
    assert "survived" not in done.stdout
    assert _temporaries(tmp_path) == [] and not path.exists()


def test_sigterm_handler_is_restored_and_called(plan, tmp_path, monkeypatch):
    calls = []

    def handler(signum, frame):
        calls.append(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        plan.save(tmp_path / "ok.plan")
        assert signal.getsignal(signal.SIGTERM) is handler
        monkeypatch.setattr(os, "fsync", lambda fd: os.kill(os.getpid(), signal.SIGTERM))
        with pytest.raises(PlanError, match="SIGTERM"):
            plan.save(tmp_path / "m.plan")
        assert calls == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert _temporaries(tmp_path) == [] and not (tmp_path / "m.plan").exists()


def test_stale_temporaries_of_our_pattern_are_swept(plan, tmp_path):
    old = time.time() - STALE_SECONDS - 60
    names = {"stale": ".edgert-ab12_xyz.tmp", "fresh": ".edgert-cd34_xyz.tmp", "other": ".edgert-notours.tmp",
             "user": "notes.tmp", "dir": ".edgert-dir00000.tmp"}
    for key, name in names.items():
        if key == "dir":
            (tmp_path / name).mkdir()
        else:
            (tmp_path / name).write_bytes(b"x")
        if key != "fresh":
            os.utime(tmp_path / name, (old, old))
    plan.save(tmp_path / "m.plan")
    left = {p.name for p in tmp_path.iterdir()}
    assert names["stale"] not in left
    assert {names[k] for k in ("fresh", "other", "user", "dir")} <= left
