"""Runs and generated datasets made once and read by every test that needs them.

A test that reads a finished run asks for it by its command line (``shared_run``); the first
asker, on any pytest worker, trains it under a file lock, and every later asker gets the same
folder. The folder's name is a hash of the run the command resolves to (the paper's options
after ``resolve``: two spellings of one run are one run; where it is written is not part of
it) and of everything that decides its result (the package's and the scripts' source, the
TensorFlow/Keras/NumPy versions), so a change to the code is a new run, never a stale one.

Each paper has one quick run that its tests, its tools' tests and the README's test read:
``quick_run(paper)``, the paper's ``--quick`` command with ``QUICK_TEST_FLAGS`` added (every
stage of the protocol, a few steps each). The README test runs each README ``--quick`` command
with the same flags, so it reads the same runs.

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


# what the tests add to each paper's --quick command: a few steps of every stage
QUICK_TEST_FLAGS = {
    # 1-4 epochs of 4 steps of 32 images per stage, at 1/16 width
    "densenet_model1": ["--width", "0.0625", "--epochs-scale", "0.02", "--steps-per-epoch", "4",
                        "--batch-size", "32", "--deterministic"],
    # every phase one epoch of 3 steps of 32 images, at 1/16 width
    "densenet_model2": ["--width", "0.0625", "--steps-per-epoch", "3", "--batch-size", "32",
                        "--deterministic"],
    "resnet_tiny_imagenet": ["--epochs-scale", "0.05", "--steps-per-epoch", "2"],
    # 2 epochs of 3 steps, ResNet-24 at a quarter of its channels
    "cifar_resnet_design": ["--width", "0.25", "--epochs", "50", "--steps-per-epoch", "3",
                            "--deterministic"],
    "multi_resnet_cifar": ["--steps-per-epoch", "4", "--deterministic"],
    # 2 epochs of 3 steps, and the 10-crop evaluation
    "denresnet": ["--steps-per-epoch", "3", "--epochs-scale", "0.04", "--ten-crop"],
}


def cache_root(tmp_path_factory=None):
    """The folder every worker of this session (or every step of ``.ci/run``) shares:
    ``$TINYNET_TEST_RUNS``, else (in pytest) the session's base temporary folder."""
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


def shared_data(tmp_path_factory, paper, root=None):
    """The folder of the generated dataset that ``<paper> --quick`` reads, made as the paper's
    own ``--quick`` makes it (one folder for papers that generate the same data); ``root``: the
    cache folder (default ``cache_root``)."""
    from tinynet.experiment import dataset_arguments
    from tinynet.papers import get_paper

    args = get_paper(paper).parse_args(["--quick"])
    spec = {k: v for k, v in dataset_arguments(args).items() if k != "data_dir"}
    key = hashlib.sha256(repr((args.dataset, sorted(spec.items()))).encode()).hexdigest()[:16]

    def make(folder):
        from tinynet.data.datasets import get_dataset
        get_dataset(args.dataset, data_dir=os.path.join(folder, "data"), **spec)

    root = root or cache_root(tmp_path_factory)
    return os.path.join(_made_once(root, f"data-{args.dataset}-{key}-{code_version()}", make),
                        "data")


def run_key(script, args):
    """What identifies the run ``experiments/<script>.py args`` makes: its options resolved as
    the paper resolves them, without the run directory."""
    from tinynet.papers import get_paper

    paper = get_paper(script)
    resolved = vars(paper.resolve(paper.build_parser().parse_args(args)))
    resolved.pop("run_dir")
    return hashlib.sha256(repr((script, sorted(resolved.items(), key=lambda kv: kv[0]))).encode(
        )).hexdigest()


def shared_run(tmp_path_factory, script, *args, data=None, root=None):
    """``(run_dir, stdout)`` of ``experiments/<script>.py *args`` run to its end, once per
    session; ``data``: the paper whose ``--quick`` dataset it reads (``shared_data``);
    ``root``: the cache folder (default ``cache_root``). Keras' home is the cache's own
    ``keras-home`` (a test can check that nothing was downloaded)."""
    root = root or cache_root(tmp_path_factory)
    args = [str(a) for a in args]
    if data is not None:
        args += ["--data-dir", shared_data(tmp_path_factory, data, root)]
    key = run_key(script, args)

    def make(folder):
        cmd = [sys.executable, os.path.join(REPO, "experiments", f"{script}.py"), *args,
               "--run-dir", os.path.join(folder, "run")]
        # the same environment whoever asks first (the README test sets these for itself; a
        # --deterministic run sets its own)
        from tinynet.training.determinism import DETERMINISTIC_ENV

        env = {k: v for k, v in os.environ.items()
               if k != "XLA_FLAGS" and k not in DETERMINISTIC_ENV}
        env["KERAS_HOME"] = keras_home(root)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO,
                              env=env)
        if proc.returncode != 0:
            raise AssertionError(f"{cmd} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        with open(os.path.join(folder, "stdout.txt"), "w") as f:
            f.write(proc.stdout)

    folder = _made_once(root, f"{script}-{key[:16]}-{code_version()}", make)
    with open(os.path.join(folder, "stdout.txt")) as f:
        return pathlib.Path(folder, "run"), f.read()


def quick_run(tmp_path_factory, paper, *extra, root=None):
    """``(run_dir, stdout)`` of the paper's ``--quick`` run at the tests' scale
    (``QUICK_TEST_FLAGS``), with ``extra`` flags, on its --quick data."""
    return shared_run(tmp_path_factory, paper, "--quick", *extra, *QUICK_TEST_FLAGS[paper],
                      data=paper, root=root)


def keras_home(root):
    """``$KERAS_HOME`` of every shared run (downloads would land in its ``models/``)."""
    return os.path.join(root, "keras-home")


def copy_run(run_dir, destination):
    """A copy of a shared run that a test may change."""
    shutil.copytree(run_dir, destination)
    return destination
