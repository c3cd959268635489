"""File helpers that work on local paths, Drive mounts and ``gs://`` alike (through tf.io.gfile).

Every file a run directory holds is written atomically: to a temporary name first, then renamed,
so a process killed mid-write leaves the previous version intact and never a half-written file.
"""
import json
import os
import tempfile
import uuid

import tensorflow as tf

gfile = tf.io.gfile


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


def read_text(path):
    with gfile.GFile(str(path), "r") as f:
        return f.read()


def read_json(path):
    return json.loads(read_text(path))


def atomic_write(path, write_fn):
    """Calls ``write_fn(local_path)`` to produce the file, then moves it into place at ``path``.

    Local targets are written beside the destination and moved with ``os.replace`` (atomic on
    POSIX). Remote targets (``gs://``) are written to a local temporary file, copied to a
    temporary remote name and renamed, so readers never see a partial object under ``path``.
    """
    path = str(path)
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
        gfile.rename(remote_tmp, path, overwrite=True)


def write_text_atomic(path, text):
    def write(local):
        with open(local, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)


def write_json_atomic(path, obj):
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
