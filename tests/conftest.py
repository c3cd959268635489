"""Shared fixtures: generated datasets (nothing is downloaded at test time) and CLI helpers.

The two tiers. The default one (the README's test command) holds what runs in seconds in the
test process, and one end-to-end run of the runner's whole path (Multi-ResNet's quick run). A
test that trains a paper's protocol end to end, starts a fresh interpreter, XLA-compiles, or
repeats a check on a second full-width ImageNet backbone (ResNet-50, DenseNet-121: seconds
each; one backbone of each kind stays in the default tier) is marked ``slow``, with the
reason; CI's second step runs them (``pytest -m slow``).
"""
import functools
import json
import os
import signal
import subprocess
import sys
import time
import types

import pytest

from tinynet.training.distribute import ensure_logical_cpus

# Three logical CPU devices for the whole session (TensorFlow fixes its devices when its runtime
# starts): data- and model-parallel tests run in this process; everything else uses CPU:0.
ensure_logical_cpus(3)

from tinynet.data.synthetic import write_synthetic_tiny_imagenet  # noqa: E402

from shared_runs import (QUICK_TEST_FLAGS, copy_run, quick_run, shared_data,  # noqa: E402,F401
                         shared_run)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# DenseNet Model 1's quick run as the tests make it (model1_run): every stage of the paper's
# protocol, 1-4 epochs of 4 steps of 32 images, at 1/16 width, --deterministic
TINY_RUN = ["--quick", *QUICK_TEST_FLAGS["densenet_model1"]]
TINY_RUN_EPOCHS = 8  # 1 + 1 + 1 + 1 + 4 (175 * 0.02 = 3.5 rounds to 4)


@pytest.fixture(scope="session")
def small_root(tmp_path_factory):
    """A 5-class Tiny ImageNet tree with a grayscale image every 7th training image."""
    return write_synthetic_tiny_imagenet(str(tmp_path_factory.mktemp("small") / "tiny"),
                                         num_classes=5, train_per_class=8, val_per_class=4,
                                         test_images=3, grayscale_every=7, seed=3)


@pytest.fixture(scope="session")
def quick_data_dir(tmp_path_factory):
    """The Tiny ImageNet twin ``--quick`` generates, made once for every test (read-only)."""
    return shared_data(tmp_path_factory, "densenet_model1")


@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    """``shared.run(script, *args, data=paper)``: a run made once for every test that asks for
    the same command (tests/shared_runs.py); ``shared.quick(paper, *extra)``: the paper's quick
    run (the README test's too); ``shared.data(paper)``: a paper's --quick data."""
    return types.SimpleNamespace(run=functools.partial(shared_run, tmp_path_factory),
                                 quick=functools.partial(quick_run, tmp_path_factory),
                                 data=functools.partial(shared_data, tmp_path_factory))


def multi_resnet_run(shared, *extra):
    """``(run_dir, stdout)`` of Multi-ResNet's quick run with ``extra`` flags (where it runs)."""
    return shared.quick("multi_resnet_cifar", *extra)


@pytest.fixture(scope="session")
def resnet_run(shared):
    """The run directory of ResNet-34's quick run (every stage, 2 steps an epoch)."""
    run_dir, _ = shared.quick("resnet_tiny_imagenet")
    return run_dir


@pytest.fixture(scope="session")
def model1_run(shared):
    """``(run_dir, stdout)`` of DenseNet Model 1's quick run, the progressive protocol."""
    return shared.quick("densenet_model1")


def load_file(folder, name, prefix="script"):
    """``<folder>/<name>.py`` (a tool in tools/) imported as a module, without running its
    command line. A paper's module is ``tinynet.papers.get_paper(name)``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{prefix}_{name}",
                                                  os.path.join(REPO, folder, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_line_error(call, *args, **kwargs):
    """The message of the TinynetError ``call`` raises, checked to be one line."""
    from tinynet.errors import TinynetError

    with pytest.raises(TinynetError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def cli_error(main, argv, capsys):
    """``run_cli(main, argv)`` in this process (a paper's or a tool's ``main``): it must end
    with exit status 2 and one line on stderr, without a traceback; returns that line."""
    from tinynet.experiment import run_cli

    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        run_cli(main, [str(a) for a in argv])
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def cli_output(main, argv, capsys):
    """``main(argv)`` through ``run_cli`` in this process, ending with status 0 (``--help``
    exits 0 too); returns its stdout."""
    from tinynet.experiment import run_cli

    capsys.readouterr()
    try:
        run_cli(main, [str(a) for a in argv])
    except SystemExit as e:
        assert e.code in (0, None), capsys.readouterr().err
    return capsys.readouterr().out


_NCHW = []


def channels_first_runs_here():
    """Whether TensorFlow has a CPU convolution for the channels_first (NCHW) layout in this
    process: only through oneDNN, which it turns on by default on some x86 CPUs alone (not on
    an AMD EPYC with AVX2, for one). Where it has none, the layout tests are skipped here and
    run by tests/test_channels_first.py in a process with oneDNN on."""
    if not _NCHW:
        import tensorflow as tf
        try:
            tf.nn.conv2d(tf.zeros((1, 1, 4, 4)), tf.zeros((1, 1, 1, 1)), 1, "VALID",
                         data_format="NCHW").numpy()
            _NCHW.append(True)
        except Exception:  # noqa: BLE001 (UnimplementedError, or an op not registered)
            _NCHW.append(False)
    return _NCHW[0]


def needs_channels_first():
    """Skips the calling test where this process cannot run channels_first (see above)."""
    if not channels_first_runs_here():
        pytest.skip("no channels_first CPU kernel without oneDNN here: "
                    "tests/test_channels_first.py runs this test with TF_ENABLE_ONEDNN_OPTS=1")


def run_test_function(module, function, *args, timeout=600):
    """Calls ``tests/<module>.py``'s ``function(*args)`` in a fresh interpreter with the
    deterministic environment (a run that must start TensorFlow its own way); returns its
    stdout."""
    from tinynet.training.determinism import DETERMINISTIC_ENV

    code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            f"import {module}; {module}.{function}(*{tuple(args)!r})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env=dict(os.environ, **DETERMINISTIC_ENV), timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def run_script(script, *args, timeout=600, env=None, check=True):
    """Runs ``experiments/<script>`` in a fresh interpreter; returns the CompletedProcess."""
    cmd = [sys.executable, os.path.join(REPO, "experiments", script), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_script_and_kill_at(script, *args, path, timeout=300):
    """Starts ``experiments/<script>`` and SIGKILLs it as soon as ``path`` exists (a
    checkpoint file it writes); returns the exit status."""
    cmd = [sys.executable, os.path.join(REPO, "experiments", script), *map(str, args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while not os.path.exists(path) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    return proc.returncode


def run_script_and_kill(script, *args, run_dir, after_epochs, delay, timeout=300):
    """Starts ``experiments/<script>`` and SIGKILLs it ``delay`` seconds after its
    ``state.json`` reports ``after_epochs`` finished epochs; returns the exit status."""
    cmd = [sys.executable, os.path.join(REPO, "experiments", script), *map(str, args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            try:
                if json.loads((run_dir / "state.json").read_text())["completed_epochs"] >= after_epochs:
                    break
            except (OSError, ValueError):  # not written yet
                pass
            time.sleep(0.05)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    return proc.returncode


# Seconds each file took on 2 cores (default tier, slow tier; 2026-12-03), the longest handed
# out first: pytest-xdist gives files to workers in collection order, so both workers start on
# the long ones and end together instead of one finishing a long file alone at the end
# (xdist's own reordering puts files with many tests first, which are not the long ones here).
FILE_SECONDS = {
    "test_readme.py": (0, 800), "test_fault_battery.py": (0, 465),
    "test_native_augment.py": (5, 400), "test_speed_options.py": (5, 260),
    "test_cifar_experiment.py": (5, 230), "test_resume.py": (0, 230),
    "test_denresnet_experiment.py": (5, 220), "test_distribute.py": (15, 160),
    "test_models.py": (8, 162), "test_backends.py": (0, 152), "test_resnet.py": (10, 135),
    "test_model2.py": (3, 130), "test_transfer.py": (8, 129), "test_preemption.py": (0, 122),
    "test_multi_resnet.py": (10, 95), "test_resnet_experiment.py": (2, 95),
    "test_evaluation.py": (5, 78), "test_tune.py": (5, 76), "test_stage_setup.py": (2, 60),
    "test_interrupts.py": (0, 48), "test_channels_first.py": (0, 44),
    "test_multi_resnet_experiment.py": (40, 12), "test_run_dir_damage.py": (30, 0),
    "test_checkpoint.py": (20, 22), "test_install.py": (0, 26),
    "test_torchvision_weights.py": (50, 35), "test_fidelity.py": (15, 0),
    "test_notebook.py": (2, 50), "test_projections.py": (3, 60), "test_scale_rehearsal.py": (0, 52),
}


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False  # keep the order below


def pytest_collection_modifyitems(config, items):
    tier = 1 if config.getoption("markexpr", "").strip() == "slow" else 0
    items.sort(key=lambda item: -FILE_SECONDS.get(os.path.basename(str(item.fspath)),
                                                  (0, 0))[tier])
