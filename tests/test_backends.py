"""Every model family and custom layer under Keras' TensorFlow, JAX and PyTorch backends, and
the ``gpu`` benchmark without TensorFlow.

Keras picks its backend when it is imported, so each backend runs tests/backend_smoke.py in
its own subprocess (``KERAS_BACKEND=...``). Off TensorFlow that script makes ``import
tensorflow`` fail, as on the lent GPU machine, which has none. The subprocesses start together
the first time a test here needs one, and run side by side (the file's wall time is about the
slowest of them, not their sum). JAX's subprocesses run with ``--xla_backend_optimization_level
=0``: XLA's CPU compilation of every small program (each variable initialiser's random draw)
otherwise dominates the run; the arithmetic is the same. The PyTorch test is skipped where
torch is not installed (CI), the JAX ones where jax is not.
"""
import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest

# CI runs this file in its second step (pytest -m slow): the default run's budget
pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "tests", "backend_smoke.py")
TIMEOUT = 600

HAVE = {b: importlib.util.find_spec(b) is not None for b in ("jax", "torch")}
needs_jax = pytest.mark.skipif(not HAVE["jax"], reason="jax is not installed")
needs_torch = pytest.mark.skipif(not HAVE["torch"], reason="torch is not installed (CI does not "
                                                            "install it; pip install torch)")

# the families of the fast run; the transfer model (a full-width ResNet-18) is a slow test
FAST = ["densenet_model1", "densenet_model2", "resnet18_sd", "cifar_resnet24", "multi_resnet",
        "layers"]

# run inside the benchmark's subprocess: backend_smoke's import blocks tensorflow (off TF)
BENCH_SCRIPT = """
import os, runpy, sys
sys.path[:0] = [{tests!r}, {tools!r}]
import backend_smoke
import benchmark
print("MACHINE:", benchmark.machine())
sys.argv = ["tools/benchmark.py", "gpu", "--steps", "1", "--warmup", "1", "--models",
            "nyu_resnet24", "--batch-size", "8", "--no-record", "--width", "0.25",
            "--precisions", "float32", "mixed_bfloat16"]
try:
    runpy.run_path({bench!r}, run_name="__main__")
except SystemExit as e:
    assert not e.code, e.code
repo = {repo!r}
mine = [s for s in backend_smoke._TensorFlowWatch.attempts
        if os.path.join(repo, "tinynet", "") in s or os.path.join(repo, "tools", "") in s]
print("TINYNET_TENSORFLOW_IMPORTS:", len(mine))
for stack in mine:
    print(stack)
print("TENSORFLOW_IMPORTED:", "tensorflow" in sys.modules)
"""


def _env(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    if backend == "jax":
        env["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS"),
                                                  "--xla_backend_optimization_level=0"]))
        env.setdefault("JAX_PLATFORMS", "cpu")
    return env


class _Runs:
    """The subprocesses, started together on first use."""

    def __init__(self, folder):
        self.folder = folder
        self.procs = {}

    def start(self, key, backend, args):
        out = open(os.path.join(self.folder, f"{key}.log"), "w")
        proc = subprocess.Popen([sys.executable] + args, cwd=REPO, env=_env(backend),
                                stdout=out, stderr=subprocess.STDOUT, text=True)
        self.procs[key] = (proc, out, time.perf_counter())

    def start_all(self):
        if self.procs:
            return
        if HAVE["jax"]:
            self.start("bench_jax", "jax", ["-c", BENCH_SCRIPT.format(
                tests=os.path.join(REPO, "tests"), tools=os.path.join(REPO, "tools"),
                bench=os.path.join(REPO, "tools", "benchmark.py"), repo=REPO)])
        for backend in ("jax", "tensorflow", "torch"):
            if backend == "tensorflow" or HAVE[backend]:
                self.start(backend, backend, [SMOKE, self.json(backend), "--only", *FAST])

    def json(self, key):
        return os.path.join(self.folder, f"{key}.json")

    def wait(self, key):
        proc, out, start = self.procs[key]
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()
        with open(out.name) as f:
            log = f.read()
        assert proc.returncode == 0, f"{key} exited with {proc.returncode}:\n{log[-6000:]}"
        return log

    def report(self, backend):
        log = self.wait(backend)
        with open(self.json(backend)) as f:
            report = json.load(f)
        report["log"] = log
        return report

    def stop(self):
        for proc, out, _ in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    runs = _Runs(str(tmp_path_factory.mktemp("backends")))
    yield runs
    runs.stop()


def _check_report(report, backend):
    assert not report["errors"], "\n\n".join(f"{k}:\n{v}" for k, v in report["errors"].items())
    assert report["backend"] == backend
    tf_params = _tf_params()
    for key in [k for k in FAST if k != "layers"]:
        result = report["models"][key]
        assert result["params"] == tf_params[key], (key, result)
        assert result["finite"], (key, result)
        assert result["max_abs_diff"] <= 1e-5, (key, result)
        # the PyTorch/Torch-origin models train with torch.optim's SGD and PyTorch's BN
        torch_rules = key in ("cifar_resnet24", "multi_resnet")
        assert result["optimizer"] == ("TorchSGD" if torch_rules else "CoupledSGD"), (key, result)
        assert result["batch_norm"] == ("TorchBatchNormalization" if torch_rules else
                                        "BatchNormalization"), (key, result)
    assert all(report["space_to_depth"].values()), report["space_to_depth"]
    assert report["specifics"]["auto_data_format"] in ("channels_last", "channels_first")
    if backend != "tensorflow":
        assert not report["tinynet_tensorflow_imports"], report["tinynet_tensorflow_imports"][0]
        assert not report["tensorflow_imported"]
        error = report["specifics"]["fused_error"]
        assert error and "TensorFlow backend" in error and "BatchNormalization" in error, error


def _tf_params():
    """backend_smoke.TF_PARAMS, read from its source (importing the script here would install
    its import hook in this process)."""
    text = open(SMOKE).read()
    start = text.index("TF_PARAMS = {")
    namespace = {}
    exec(text[start:text.index("}", start) + 1], namespace)
    return namespace["TF_PARAMS"]


def test_models_on_tensorflow(runs):
    runs.start_all()
    report = runs.report("tensorflow")
    _check_report(report, "tensorflow")
    assert report["space_to_depth"]["tf_nn_b2"] and report["space_to_depth"]["tf_nn_b3"]
    sd = report["stochastic_depth"]
    assert not sd["problems"], sd
    assert sd["seen"]["eager"] == ["dropped", "kept"] == sd["seen"]["compiled"], sd


@needs_jax
def test_models_on_jax_without_tensorflow(runs):
    runs.start_all()
    _check_report(runs.report("jax"), "jax")


@needs_jax
def test_stochastic_depth_batch_mode_on_jax(runs):
    """Dropped: exactly the shortcut and the branch's BN statistics untouched; kept: shortcut +
    branch (1e-6: the cond's branch is XLA-compiled) and the statistics updated; eagerly and
    under jax.jit."""
    runs.start_all()
    sd = runs.report("jax")["stochastic_depth"]
    assert not sd["problems"], sd
    assert sd["seen"]["eager"] == ["dropped", "kept"] == sd["seen"]["compiled"], sd


@needs_torch
def test_models_on_torch_without_tensorflow(runs):
    runs.start_all()
    report = runs.report("torch")
    _check_report(report, "torch")
    sd = report["stochastic_depth"]
    assert not sd["problems"] and sd["seen"]["eager"] == ["dropped", "kept"], sd


@needs_jax
def test_gpu_benchmark_on_jax_without_tensorflow(runs):
    runs.start_all()
    log = runs.wait("bench_jax")
    assert "backend jax; no accelerator" in log or "backend jax; accelerator" in log, log
    assert "| nyu_resnet24 | 32 | 8 | float32 | always (JAX) |" in log, log
    assert "| nyu_resnet24 | 32 | 8 | mixed_bfloat16 | always (JAX) |" in log, log
    assert "failed" not in log.split("| model |")[1], log
    assert "no TensorFlow" in log.split("MACHINE:")[1].splitlines()[0], log
    assert "TINYNET_TENSORFLOW_IMPORTS: 0" in log, log
    assert "TENSORFLOW_IMPORTED: False" in log, log


def test_gpu_benchmark_projects_the_papers_protocols():
    """``benchmark.py gpu`` projects a whole protocol from ``tinynet.papers``' own protocols on
    the real data sizes (``tinynet.projections.workloads``): the images each paper's protocol
    trains on, as the papers state them."""
    sys.path.insert(0, os.path.join(REPO, "tools"))
    try:
        import benchmark
    finally:
        sys.path.pop(0)
    work = benchmark.GPU_WORKLOADS
    images = {name: w.training_images() for name, w in work.items()}
    # Model 1: 245 epochs of 200 batches (15 + 10 epochs at batch 256, the rest at 64)
    assert images["densenet_model1"] == (15 + 10) * 200 * 256 + (30 + 15 + 175) * 200 * 64
    assert len(work["densenet_model1"].epochs) == 245
    assert images["densenet_model2"] == 108 * (100_000 // 128) * 128  # 108 epochs of 781
    for name in ("resnet18", "resnet34", "resnet50"):  # seed 001's final: 70k iterations of 100
        assert images[name] == 70_000 * 100
        assert (work[name].batch_size, work[name].px) == (100, 64)
        assert work[name].build_kwargs()["stochastic_depth"] == 0.5
    assert images["nyu_resnet24"] == 2 * 200 * (45_000 // 128) * 128  # 200 + 200 epochs
    assert images["multi_resnet200_k5"] == 164 * (50_000 // 128) * 128
    assert (work["multi_resnet200_k5"].batch_size, work["multi_resnet200_k5"].px) == (128, 32)
    assert benchmark.DENRESNET_BATCH == {"resnet18": 128, "resnet34": 64, "resnet50": 64,
                                         "resnet101": 24, "resnet152": 24, "densenet121": 24}
    assert {name[len("transfer_"):]: work[name].batch_size for name in work
            if name.startswith("transfer_")} == benchmark.DENRESNET_BATCH


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_transfer_resnet18_on_backend(backend, tmp_path):
    """DenResNet's transfer model (full-width ResNet-18 backbone, weights=None) under each
    backend: the same parameter count, 2 training steps, save and reload."""
    if backend != "tensorflow" and not HAVE[backend]:
        pytest.skip(f"{backend} is not installed")
    result = tmp_path / "r.json"
    subprocess.run([sys.executable, SMOKE, str(result), "--only", "transfer_resnet18"], cwd=REPO,
                   env=_env(backend), check=True, timeout=TIMEOUT, capture_output=True)
    report = json.loads(result.read_text())
    assert not report["errors"], report["errors"]
    model = report["models"]["transfer_resnet18"]
    assert model["params"] == _tf_params()["transfer_resnet18"], model
    assert model["finite"] and model["max_abs_diff"] <= 1e-5, model
    if backend != "tensorflow":
        assert not report["tinynet_tensorflow_imports"] and not report["tensorflow_imported"]
