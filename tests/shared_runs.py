"""Runs and generated datasets made once and read by every test that needs them.

A test that reads a finished run asks for it by its command line (``shared_run``); the first
asker, on any pytest worker, trains it under a file lock, and every later asker gets the same
folder. The folder's name is a hash of the command and of everything that decides its result
(the package's and the scripts' source, the TensorFlow/Keras/NumPy versions), so a change to
the code is a new run, never a stale one.

Where the cache lives: ``$TINYNET_TEST_RUNS`` if set (``.ci/run`` sets it to one folder for
both of its pytest steps, so the slow tier reads the default tier's runs, then removes it);
otherwise the pytest session's base temporary folder, which every xdist worker of the session
shares and pytest prunes like any other.

Shared runs are read-only: a test that changes a run (resumes it, damages it) works on
``copy_run``'s copy.
"""
import contextlib
import fcntl
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SOURCES = ("tinynet", "experiments")


def cache_root(tmp_path_factory):
    """The folder every worker of this session (or every step of ``.ci/run``) shares."""
    root = os.environ.get("TINYNET_TEST_RUNS")
    if not root:
        base = tmp_path_factory.getbasetemp()
        if os.environ.get("PYTEST_XDIST_WORKER"):  # <session>/popen-gwN
            base = base.parent
        root = os.path.join(str(base), "shared-runs")
    os.makedirs(root, exist_ok=True)
    return root


_CODE = []


def code_version():
    """A hash of the package's and the scripts' source and of the libraries that run them."""
    if not _CODE:
        import keras
        import numpy
        import tensorflow

        h = hashlib.sha256()
        for top in _SOURCES:
            for folder, dirs, files in sorted(os.walk(os.path.join(REPO, top))):
                dirs.sort()
                for name in sorted(files):
                    if name.endswith((".py", ".c", ".cc", ".h")):
                        path = os.path.join(folder, name)
                        h.update(os.path.relpath(path, REPO).encode())
                        with open(path, "rb") as f:
                            h.update(f.read())
        h.update(f"{sys.version_info[:2]} tf {tensorflow.__version__} keras "
                 f"{keras.__version__} numpy {numpy.__version__}".encode())
        _CODE.append(h.hexdigest()[:16])
    return _CODE[0]


@contextlib.contextmanager
def _locked(path):
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _made_once(root, key, make):
    """``root/<key>``, made by ``make(partial_folder)`` by the first caller only."""
    folder = os.path.join(root, key)
    with _locked(folder):
        if not os.path.isdir(folder):
            partial = folder + ".partial"
            shutil.rmtree(partial, ignore_errors=True)
            os.makedirs(partial)
            try:
                make(partial)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
            os.rename(partial, folder)
    return folder


def shared_data(tmp_path_factory, paper):
    """The folder of the generated dataset that ``<paper> --quick`` reads, made as the paper's
    own ``--quick`` makes it (one folder for papers that generate the same data)."""
    from tinynet.experiment import dataset_arguments
    from tinynet.papers import get_paper

    args = get_paper(paper).parse_args(["--quick"])
    spec = {k: v for k, v in dataset_arguments(args).items() if k != "data_dir"}
    key = hashlib.sha256(repr((args.dataset, sorted(spec.items()))).encode()).hexdigest()[:16]

    def make(folder):
        from tinynet.data.datasets import get_dataset
        get_dataset(args.dataset, data_dir=os.path.join(folder, "data"), **spec)

    root = cache_root(tmp_path_factory)
    return os.path.join(_made_once(root, f"data-{args.dataset}-{key}-{code_version()}", make),
                        "data")


def shared_run(tmp_path_factory, script, *args, data=None):
    """``(run_dir, stdout)`` of ``experiments/<script>.py *args`` run to its end, once per
    session; ``data``: the paper whose ``--quick`` dataset it reads (``shared_data``)."""
    args = [str(a) for a in args]
    if data is not None:
        args += ["--data-dir", shared_data(tmp_path_factory, data)]
    key = hashlib.sha256(repr((script, args)).encode()).hexdigest()

    def make(folder):
        cmd = [sys.executable, os.path.join(REPO, "experiments", f"{script}.py"), *args,
               "--run-dir", os.path.join(folder, "run")]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
        if proc.returncode != 0:
            raise AssertionError(f"{cmd} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        with open(os.path.join(folder, "stdout.txt"), "w") as f:
            f.write(proc.stdout)

    folder = _made_once(cache_root(tmp_path_factory), f"{script}-{key[:16]}-{code_version()}", make)
    with open(os.path.join(folder, "stdout.txt")) as f:
        return pathlib.Path(folder, "run"), f.read()


def copy_run(run_dir, destination):
    """A copy of a shared run that a test may change."""
    shutil.copytree(run_dir, destination)
    return destination
