"""File helpers that work on local paths, Drive mounts and ``gs://`` alike (through tf.io.gfile).

Every file a run directory holds is written atomically: to a temporary name first, then renamed,
so a process killed mid-write leaves the previous version intact and never a half-written file.
"""
import errno
import json
import os
import shutil
import sys
import tempfile
import time
import uuid

import tensorflow as tf

from tinynet.errors import TinynetError

gfile = tf.io.gfile
PAUSE_ENV = "TINYNET_PAUSE_BEFORE_RENAME"


class DiskFull(TinynetError):
    """A write found no space left (ENOSPC, or the quota: EDQUOT); the file it was replacing is
    intact and the temporary file removed."""


def format_bytes(n):
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024


def free_bytes(path):
    """Free space where ``path`` (or its nearest existing parent) lives; None off local disks."""
    if not is_local(path):
        return None
    path = os.path.abspath(str(path))
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


def _before_rename(tmp, path):
    """A test hook: with ``TINYNET_PAUSE_BEFORE_RENAME=<seconds>[:<substring>]`` every atomic
    write whose target contains ``substring`` announces itself on stderr and sleeps between
    writing its temporary file and renaming it, so a fault test can kill the process there."""
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return
    seconds, _, pattern = spec.partition(":")
    if pattern in path:
        print(f"tinynet-test: paused before rename {path}", file=sys.stderr, flush=True)
        time.sleep(float(seconds))


def _write_error(e, path, size_hint):
    """The ``TinynetError`` for an ``OSError`` that writing ``path`` met, or None when it is
    not one a user can fix (then the original error propagates)."""
    code = getattr(e, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        free = free_bytes(path)
        need = f"; this file needs about {format_bytes(size_hint)}" if size_hint else ""
        have = f" ({format_bytes(free)} free)" if free is not None else ""
        return DiskFull(f"no space left on the disk of {path}{have}{need}; the previous "
                        f"version of every file is intact: free some space and re-run the "
                        f"same command to resume")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return TinynetError(f"cannot write {path}: {os.strerror(code).lower()}; make its folder "
                            f"writable or choose another --run-dir")
    return None


def _umask():
    """The process umask, read when a file is written (not at import: setting it to read it
    would briefly change it for every thread of the importing program)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def is_local(path):
    return "://" not in str(path)


def join(*parts):
    return os.path.join(*[str(p) for p in parts])


def exists(path):
    return gfile.exists(str(path))


def makedirs(path):
    gfile.makedirs(str(path))


def listdir(path):
    return sorted(gfile.listdir(str(path))) if exists(path) else []


def remove(path):
    if exists(path):
        gfile.remove(str(path))


def rmtree(path):
    if exists(path):
        gfile.rmtree(str(path))


def move(source, target):
    """Moves a file or folder: one rename on a local disk; where rename cannot move folders
    (gs://), a copy of every file, then the removal of the source."""
    source, target = str(source).rstrip("/"), str(target).rstrip("/")
    if is_local(source) and is_local(target):
        os.rename(source, target)
        return
    if not gfile.isdir(source):
        gfile.rename(source, target)
        return
    for folder, _, files in gfile.walk(source):
        destination = target + folder.rstrip("/")[len(source):]  # walk yields full paths
        gfile.makedirs(destination)
        for name in files:
            gfile.copy(join(folder, name), join(destination, name), overwrite=True)
    gfile.rmtree(source)


def read_text(path):
    with gfile.GFile(str(path), "r") as f:
        return f.read()


def read_json(path):
    return json.loads(read_text(path))


def atomic_write(path, write_fn, size_hint=None):
    """Calls ``write_fn(local_path)`` to produce the file, then moves it into place at ``path``.

    Local targets are written beside the destination and moved with ``os.replace`` (atomic on
    POSIX). Remote targets (``gs://``) are written to a local temporary file, copied to a
    temporary remote name and renamed, so readers never see a partial object under ``path``.
    A full disk or a folder that cannot be written raises ``TinynetError`` (``DiskFull`` for
    the first, naming ``size_hint`` bytes as what the file needs) with the previous version of
    ``path`` untouched and no temporary file left.
    """
    path = str(path)
    try:
        _atomic_write(path, write_fn)
    except OSError as e:
        error = _write_error(e, path, size_hint)
        if error is None:
            raise
        raise error from None
    except Exception as e:  # Keras' saving wraps the OSError of a full disk in its own errors
        cause = e.__cause__ or e.__context__
        error = _write_error(cause, path, size_hint) if isinstance(cause, OSError) else None
        if error is None:
            raise
        raise error from None


def _atomic_write(path, write_fn):
    parent = os.path.dirname(path) or "."
    if is_local(path):
        os.makedirs(parent, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=parent)
        os.close(fd)
        try:
            # mkstemp makes owner-only files; run-directory files get the usual permissions
            # (a run dir is often shared or synced)
            os.chmod(tmp, 0o666 & ~_umask())
            write_fn(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            _before_rename(tmp, path)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return
    makedirs(parent)
    with tempfile.TemporaryDirectory() as local_dir:
        local = os.path.join(local_dir, os.path.basename(path))
        write_fn(local)
        remote_tmp = f"{parent}/.tmp-{uuid.uuid4().hex}-{os.path.basename(path)}"
        gfile.copy(local, remote_tmp, overwrite=True)
        _before_rename(remote_tmp, path)
        gfile.rename(remote_tmp, path, overwrite=True)


def write_text_atomic(path, text):
    def write(local):
        with open(local, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)


def write_json_atomic(path, obj):
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_result_json(path, obj, log=print):
    """A result file written after training (test metrics, an evaluation). Where the run
    directory cannot take it (read-only, as a finished run kept in an archive may be; a full
    disk) the result is not lost: the caller prints it, and this says why the file is missing."""
    try:
        write_json_atomic(path, obj)
        return True
    except TinynetError as e:
        log(f"note: {os.path.basename(str(path))} not written ({e})")
        return False

