"""One writer per run directory (``tinynet.training.lock``): a second process is refused in one
line naming the holder, a holder killed with SIGKILL leaves a lock the next run takes over, a
holder on another machine counts while its heartbeat is fresh, and a refused run leaves no
folder behind."""
import json
import os
import platform
import signal
import subprocess
import sys
import time

import pytest

from tinynet.training import lock

from conftest import REPO, cli_error

HOLD = """
import sys, time
sys.path.insert(0, {repo!r})
from tinynet.training import lock
lock.acquire(sys.argv[1], log=lambda line: None)
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path):
    """A second process holding the lock of ``tmp_path / "run"``; SIGKILLed at the end."""
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(repo=REPO), str(run_dir)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield run_dir, proc
    proc.kill()
    proc.wait()


def test_a_second_process_is_refused_and_a_killed_holder_is_taken_over(holder, capsys):
    run_dir, proc = holder
    record = json.loads((run_dir / lock.LOCK_NAME).read_text())
    assert record["pid"] == proc.pid and record["host"] == platform.node()

    # a paper's command on the same --run-dir: refused in one line, before it loads any data
    from tinynet.papers import get_paper
    data_dir = run_dir.parent / "data"
    line = cli_error(get_paper("multi_resnet_cifar").main,
                     ["--quick", "--run-dir", run_dir, "--data-dir", data_dir], capsys)
    assert f"in use by process {proc.pid} on host {platform.node()}" in line, line
    assert "--run-dir" in line
    assert sorted(os.listdir(run_dir)) == [lock.LOCK_NAME] and not data_dir.exists()

    # SIGKILL: the kernel frees the flock; the next run takes it over and says whose it was
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    notes = []
    with lock.holding(str(run_dir), log=notes.append):
        assert json.loads((run_dir / lock.LOCK_NAME).read_text())["pid"] == os.getpid()
        assert len(notes) == 1 and f"process {proc.pid}" in notes[0], notes
        assert "no longer running" in notes[0]
    assert not (run_dir / lock.LOCK_NAME).exists()  # released: nothing left behind


def test_lock_is_reentrant_in_one_process_and_released_by_the_last_release(tmp_path):
    run_dir = str(tmp_path / "run")
    first = lock.acquire(run_dir)
    assert lock.acquire(run_dir) is first
    lock.release(run_dir)
    assert os.path.exists(os.path.join(run_dir, lock.LOCK_NAME))
    lock.release(run_dir)
    assert not os.path.exists(run_dir)  # made by the lock, nothing written: removed


def test_folders_made_for_the_lock_go_and_a_written_one_stays(tmp_path):
    deep = tmp_path / "a" / "b" / "run"
    with lock.holding(str(deep)):
        assert deep.is_dir()
    assert not (tmp_path / "a").exists()
    with lock.holding(str(deep)):
        (deep / "config.json").write_text("{}")
    assert sorted(os.listdir(deep)) == ["config.json"]


def _foreign(run_dir, heartbeat_age):
    run_dir.mkdir()
    now = time.time()
    (run_dir / lock.LOCK_NAME).write_text(json.dumps(
        {"pid": 4242, "host": "another-machine", "boot_id": "x", "started": now - 3600,
         "heartbeat": now - heartbeat_age}))


def test_another_hosts_fresh_lock_is_refused_and_a_silent_one_taken_over(tmp_path):
    from conftest import one_line_error

    fresh = tmp_path / "fresh"
    _foreign(fresh, heartbeat_age=10)
    message = one_line_error(lock.acquire, str(fresh))
    assert "process 4242 on host another-machine" in message
    assert f"lapses {lock.STALE_SECONDS:.0f} s after it was last heard" in message
    assert json.loads((fresh / lock.LOCK_NAME).read_text())["pid"] == 4242  # left as it was

    silent = tmp_path / "silent"
    _foreign(silent, heartbeat_age=lock.STALE_SECONDS + 1)
    notes = []
    with lock.holding(str(silent), log=notes.append):
        assert json.loads((silent / lock.LOCK_NAME).read_text())["pid"] == os.getpid()
    assert "another-machine" in notes[0] and "no longer running" in notes[0]


def test_a_dead_process_on_this_host_is_recognised_without_flock(tmp_path, monkeypatch):
    """Where the filesystem has no flock (and on gs://), the record alone decides: a process
    of this host that no longer exists holds nothing; a live one (this test's) is refused."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = {"pid": dead.pid, "host": platform.node(), "boot_id": lock._boot_id(),
              "started": time.time(), "heartbeat": time.time()}
    assert not lock.holder_is_live(record)
    assert lock.holder_is_live(dict(record, pid=os.getpid()))
    assert lock.holder_is_live(dict(record, host="elsewhere"))
    assert not lock.holder_is_live(dict(record, host="elsewhere",
                                        heartbeat=time.time() - lock.STALE_SECONDS - 1))

    # the same through acquire, on a filesystem whose flock fails (ENOLCK)
    import errno
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    run_dir = tmp_path / "nolocks"
    run_dir.mkdir()
    (run_dir / lock.LOCK_NAME).write_text(json.dumps(dict(record, pid=os.getppid())))
    from conftest import one_line_error
    assert f"process {os.getppid()}" in one_line_error(lock.acquire, str(run_dir))
    (run_dir / lock.LOCK_NAME).write_text(json.dumps(record))
    notes = []
    with lock.holding(str(run_dir), log=notes.append):
        assert json.loads((run_dir / lock.LOCK_NAME).read_text())["pid"] == os.getpid()
    assert f"process {dead.pid}" in notes[0] and not (run_dir / lock.LOCK_NAME).exists()
