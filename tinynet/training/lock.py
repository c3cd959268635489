"""One writer per run directory: an exclusive lock taken before anything is written there.

Two processes training into one ``--run-dir`` (a second terminal, a second notebook cell, a
second Colab session on the same Drive folder) would interleave their checkpoints, history and
config.json, so the second is refused in one line that names the first's PID and host.

How it is held, by where the run directory lives:

- **A local path or a mounted folder** (Drive's mount included): ``fcntl.flock`` on
  ``<run_dir>/.tinynet.lock``. The kernel releases it when its process dies, however it dies
  (SIGKILL and a lost VM included), so a lock whose process is gone is simply free: the next
  run takes it over and says whose it was. The file also holds its holder's record (PID, host,
  start, a heartbeat refreshed every ``HEARTBEAT_SECONDS``), which names the holder in the
  refusal and covers what ``flock`` cannot see: a process on *another machine* writing the same
  network folder. Such a holder's lock counts while its heartbeat is younger than
  ``STALE_SECONDS``; after that its machine is taken to be gone (a preempted VM) and the lock is
  taken over, which is what lets a new Colab session resume a lost one's run.
- **An object store** (``gs://``), which has no file locks: the same record, written after
  reading that no live holder has one (a holder on this host is live while its process runs;
  on another host while its heartbeat is fresh). Two starts within the same second can both
  pass that check; nothing closer is possible through ``tf.io.gfile``.

The lock is released on every way out of the process that runs Python's ``finally`` blocks
(a normal end, an error, Ctrl-C, SIGTERM's checkpoint-and-exit); after SIGKILL it is stale as
described. A run directory the lock created and nothing else wrote to is removed again on
release, so a run refused after the lock leaves no empty folder behind. Within one process
the lock is re-entrant: the scripts that train several members (ensembles) or evaluate after
training hold it once per run directory.
"""
import contextlib
import datetime
import errno
import json
import os
import platform
import threading
import time

from tinynet import io as tio
from tinynet.errors import TinynetError

LOCK_NAME = ".tinynet.lock"
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 120.0  # another host's lock silent this long: its machine is gone


class RunDirectoryInUse(TinynetError):
    """Another live process holds the run directory's lock."""


def _boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def _now():
    return time.time()


def _stamp(seconds):
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def _record(started):
    return {"pid": os.getpid(), "host": platform.node(), "boot_id": _boot_id(),
            "started": started, "heartbeat": _now()}


def _parse(text):
    try:
        record = json.loads(text)
        return record if isinstance(record, dict) and "pid" in record else None
    except (ValueError, TypeError):
        return None


def _process_alive(pid):
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # exists, another user's (or unreadable): assume live
    return True


def holder_is_live(record, now=None):
    """Whether the process ``record`` names may still be writing: on this host (same boot),
    while its process exists; elsewhere, while its heartbeat is younger than STALE_SECONDS."""
    now = _now() if now is None else now
    if record.get("host") == platform.node() and record.get("boot_id") == _boot_id():
        return _process_alive(record.get("pid", -1))
    return now - float(record.get("heartbeat") or 0) < STALE_SECONDS


def describe_holder(record):
    """``process 123 on host h (since ..., last heard 5 s ago)``."""
    if not record:
        return "another process (its record is being written)"
    ago = max(0, _now() - float(record.get("heartbeat") or 0))
    return (f"process {record.get('pid')} on host {record.get('host')} (since "
            f"{_stamp(float(record.get('started') or 0))}, last heard {ago:.0f} s ago)")


def in_use_error(run_dir, record):
    elsewhere = record and record.get("host") != platform.node()
    wait = (f"; if that machine is gone, its lock lapses {STALE_SECONDS:.0f} s after it was "
            f"last heard, and the same command then resumes the run" if elsewhere else
            "; wait for it to finish, or stop it (Ctrl-C or kill: it checkpoints first), "
            "then re-run to resume")
    return RunDirectoryInUse(f"the run directory {run_dir} is in use by "
                             f"{describe_holder(record)}: one run directory takes one writer"
                             f"{wait}; or choose another --run-dir")


class RunLock:
    """The lock of one run directory (see the module docstring); ``acquire`` / ``release``."""

    def __init__(self, run_dir, log=print):
        self.run_dir = str(run_dir)
        self.path = tio.join(self.run_dir, LOCK_NAME)
        self.log = log
        self.local = tio.is_local(self.run_dir)
        self._fd = None
        self._created = None  # the outermost folder acquire made (removed again if empty)
        self._started = _now()
        self._stop = threading.Event()
        self._thread = None
        self._write_lock = threading.Lock()

    # -- acquiring -----------------------------------------------------------------------
    def acquire(self):
        if self.local:
            self._acquire_local()
        else:
            self._acquire_remote()
        self._thread = threading.Thread(target=self._heartbeat, daemon=True,
                                        name=f"tinynet-lock-heartbeat {self.run_dir}")
        self._thread.start()
        return self

    def _acquire_local(self):
        import fcntl

        self._created = _first_missing(self.run_dir)
        os.makedirs(self.run_dir, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                previous = _parse(_read_fd(fd))
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise in_use_error(self.run_dir, previous) from None
                if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    self._acquire_by_record(previous)  # a filesystem without flock
                    return
                raise
            try:  # the file we locked may have been unlinked by the holder releasing it
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        previous = _parse(_read_fd(fd))
        if previous and previous.get("host") != platform.node() and holder_is_live(previous):
            # flock cannot see a process on another machine writing this network folder
            self._close_local()
            raise in_use_error(self.run_dir, previous)
        self._note_takeover(previous)
        self._write(_record(self._started))

    def _acquire_by_record(self, previous):
        if previous and holder_is_live(previous):
            raise in_use_error(self.run_dir, previous)
        self._note_takeover(previous)
        self._write(_record(self._started))

    def _acquire_remote(self):
        previous = _parse(tio.read_text(self.path)) if tio.exists(self.path) else None
        self._acquire_by_record(previous)

    def _note_takeover(self, previous):
        if previous and previous.get("pid") is not None:
            self.log(f"note: took over the lock of {self.run_dir} from "
                     f"{describe_holder(previous)}, which is no longer running")

    # -- holding -------------------------------------------------------------------------
    def _write(self, record):
        text = json.dumps(record)
        with self._write_lock:
            if self._fd is not None:
                os.ftruncate(self._fd, 0)
                os.pwrite(self._fd, text.encode(), 0)
            else:
                with tio.gfile.GFile(self.path, "w") as f:
                    f.write(text)

    def _heartbeat(self):
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self._write(_record(self._started))
            except Exception:  # a full disk or a lost mount: the run's own writes report it
                pass

    # -- releasing -----------------------------------------------------------------------
    def release(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._fd is not None:
            self._close_local(unlink=True)
        else:
            with contextlib.suppress(Exception):
                tio.remove(self.path)
        if self._created:  # the folders the lock made, if the run wrote nothing in them
            folder = os.path.abspath(self.run_dir)
            while True:
                try:
                    os.rmdir(folder)
                except OSError:
                    break
                if folder == self._created:
                    break
                folder = os.path.dirname(folder)

    def _close_local(self, unlink=False):
        with self._write_lock:
            if unlink:  # while still holding it: a waiter then locks a file it re-checks
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            os.close(self._fd)
            self._fd = None


def _first_missing(path):
    """The outermost folder of ``path`` that does not exist yet (None: it exists)."""
    path = os.path.abspath(path)
    missing = None
    while not os.path.exists(path):
        missing, path = path, os.path.dirname(path)
    return missing


def _read_fd(fd):
    try:
        return os.pread(fd, 65536, 0).decode(errors="replace")
    except OSError:
        return ""


_held = {}  # absolute run directory -> [RunLock, holds]


def _key(run_dir):
    return os.path.realpath(run_dir) if tio.is_local(run_dir) else str(run_dir).rstrip("/")


def acquire(run_dir, log=print):
    """Takes (or, in this process, takes again) the lock of ``run_dir``; each call is matched
    by one ``release(run_dir)``. Raises ``RunDirectoryInUse`` while another live process
    holds it."""
    key = _key(run_dir)
    if key in _held:
        _held[key][1] += 1
    else:
        _held[key] = [RunLock(run_dir, log).acquire(), 1]
    return _held[key][0]


def release(run_dir):
    key = _key(run_dir)
    entry = _held.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] <= 0:
        del _held[key]
        entry[0].release()


def release_all():
    """Releases every lock this process holds (a command line's end)."""
    for key in list(_held):
        lock, _ = _held.pop(key)
        lock.release()


@contextlib.contextmanager
def holding(run_dir, log=print):
    """``with holding(run_dir):`` the run directory's lock for the block."""
    acquire(run_dir, log)
    try:
        yield
    finally:
        release(run_dir)
