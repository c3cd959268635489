"""Keeps TensorFlow's start-up chatter off the terminal, and nothing else.

Importing TensorFlow 2.21 on a machine without a GPU writes, on file descriptor 2 from C++:

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... port.cc:153] oneDNN custom operations are on. You may see slightly different ...
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    I0000 ... cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available ...
    To enable the following instructions: AVX2 ... rebuild TensorFlow with the appropriate ...
    E0000 ... cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to
    cuInit: UNKNOWN ERROR (303)

(the first lines twice: two shared libraries, each with its own logger). No environment variable
hides all of them: the lines before ``absl::InitializeLog()`` ignore ``TF_CPP_MIN_LOG_LEVEL``
(measured: even level 3 leaves them), the cuInit line is ERROR level (only level 3, which hides
every C++ error, drops it), and ``TF_ENABLE_ONEDNN_OPTS=0`` would change the numerics to silence
a notice. So ``quiet_tensorflow`` sets ``TF_CPP_MIN_LOG_LEVEL=1`` (INFO off, warnings and errors
on; a value already in the environment is kept) and puts a filter on descriptor 2 that drops the
lines of ``NOISE`` -- INFO records, the absl banner, the CPU-instructions continuation line,
GPU-plugin double-registration errors, and a cuInit failure that only says there is no GPU --
and passes everything else, byte for byte.

The filter is a separate small process reading a pipe that descriptor 2 is redirected into: a
crash of this process (a C++ ``Check failed`` before abort, a segfault) still reaches the
terminal, because the filter drains the pipe after this process is gone. At a normal exit the
descriptor is restored and the filter waited for (``_restore``, via atexit), so nothing it holds
appears after the shell prompt. It runs in its own session, so Ctrl-C reaches only the trainer.
One visible difference: descriptor 2 is a pipe, so ``sys.stderr.isatty()`` is False afterwards.
"""
import atexit
import os
import subprocess
import sys

# Lines (without their newline) the filter drops; bytes, as C++ wrote them.
NOISE = [
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    # the second line of cpu_feature_guard's INFO record
    rb"To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler "
    rb"flags\.",
    # each of TensorFlow's and XLA's libraries registers the CUDA plugins; the second says so
    rb"[EW]\d{4} [\d:.]+ +\d+ \S+\] Unable to register cu(DNN|FFT|BLAS) factory: .*",
    rb"[EW]\d{4} [\d:.]+ +\d+ \S+\] computation placer already registered\..*",
    rb"[EW]\d{4} [\d:.]+ +\d+ \S+\] TF-TRT Warning: Could not find TensorRT",
    # no GPU (or no driver) on this machine; other cuInit failures (a driver mismatch) pass
    rb"E\d{4} [\d:.]+ +\d+ \S+\] failed call to cuInit: .*"
    rb"(UNKNOWN ERROR \(303\)|CUDA_ERROR_NO_DEVICE|no CUDA-capable device is detected).*",
]
INFO = rb"I\d{4} [\d:.]+ +\d+ \S+:\d+\] .*"  # absl's INFO records: what TF_CPP_MIN_LOG_LEVEL=1 hides

_ENV_MARK = "TINYNET_STDERR_FILTER"  # "<device>:<inode>" of the pipe descriptor 2 feeds
_state = {}  # the filter process and the saved descriptor, while installed

# The filter process (python -I -c): copies stdin to stdout, line by line, leaving out lines
# that match argv[1:]. A partial line waits at most 0.2 s for its end, then goes out as it is
# (a prompt or a \r progress bar is not held back); its rest is then not matched.
_FILTER = r"""
import os, re, select, signal, sys
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
    signal.signal(s, signal.SIG_IGN)
drop = re.compile(b"|".join(b"(?:" + p.encode("latin-1") + b")" for p in sys.argv[1:]))
out, pending, midline = 1, b"", False
def write(data):
    while data:
        data = data[os.write(out, data):]
while True:
    if pending and not select.select([0], [], [], 0.2)[0]:
        write(pending)
        pending, midline = b"", True
        continue
    chunk = os.read(0, 65536)
    if not chunk:
        break
    *lines, pending = (pending + chunk).split(b"\n")
    kept = []
    for line in lines:
        if midline or not drop.fullmatch(line.rstrip(b"\r")):
            kept.append(line + b"\n")
        midline = False
    write(b"".join(kept))
write(pending)
"""


def _pipe_id(fd):
    st = os.fstat(fd)
    return f"{st.st_dev}:{st.st_ino}"


def _filtered_already():
    """True when descriptor 2 already feeds a filter: installed here, or inherited (a process
    that ``quiet_tensorflow`` ran in re-executed itself, or started this one on its stderr)."""
    if _state:
        return True
    try:
        return os.environ.get(_ENV_MARK) == _pipe_id(2)
    except OSError:
        return False


def quiet_tensorflow(verbose=False):
    """Hides TensorFlow's C++ start-up lines (module docstring) unless ``verbose``; call it
    before TensorFlow is imported (later, it still catches what comes after, e.g. the cuInit
    line at the first op). Only for a command line's own process: it redirects descriptor 2
    for the rest of the process. Returns True when the filter is in place."""
    if verbose:
        return False
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if os.name != "posix":
        return False
    if _filtered_already():
        return True
    patterns = list(NOISE)
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] not in ("", "0"):  # INFO asked for: kept
        patterns.append(INFO)
    if sys.stderr is not None:
        sys.stderr.flush()
    opened = []
    try:
        saved = os.dup(2)
        opened.append(saved)
        read, write = os.pipe()
        opened += [read, write]
        process = subprocess.Popen(
            [sys.executable, "-I", "-c", _FILTER] + [p.decode("latin-1") for p in patterns],
            stdin=read, stdout=saved, stderr=saved, start_new_session=True)
    except (OSError, ValueError):  # no descriptor 2 or none to spare, no interpreter to start
        for fd in opened:
            os.close(fd)
        return False
    os.close(read)
    os.dup2(write, 2)
    os.close(write)
    os.environ[_ENV_MARK] = _pipe_id(2)
    _state.update(process=process, saved=saved)
    atexit.register(_restore)
    return True


def _restore(timeout=5.0):
    """Puts the original descriptor 2 back and waits for the filter to write what it holds
    (the wait is bounded: a child process still holding the pipe keeps the filter alive)."""
    if not _state:
        return
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(_state["saved"], 2)  # closes this process's end of the pipe
    os.close(_state["saved"])
    if os.environ.get(_ENV_MARK):
        del os.environ[_ENV_MARK]
    try:
        _state["process"].wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    _state.clear()
