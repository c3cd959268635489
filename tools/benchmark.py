"""Benchmarks that print a table and record it in docs/benchmarks.md with the machine and date.

    python tools/benchmark.py train                      # full-width Models 1 and 2, 64 px, batch 64
    python tools/benchmark.py train --models densenet_model1 --batch-size 256 --resolution 32
    python tools/benchmark.py quick                      # wall time of the README's --quick demo
    python tools/benchmark.py pipeline                   # input pipeline images/s per recipe
    python tools/benchmark.py resnet                     # ResNet speed-ups: fused BN, XLA, NCHW, SD
    python tools/benchmark.py cifar                      # seed 004's Table 1 rows: epoch time on CIFAR-10
    python tools/benchmark.py parallel                   # seed 003's Table V: model vs data parallel
    python tools/benchmark.py gpu                        # every paper's model on the accelerator,
                                                         # any Keras backend (no TensorFlow needed)
    python tools/benchmark.py project --count            # projected GPU times from counted FLOPs

``train`` measures training throughput (images/s) of registered models: ``model.fit`` on
in-memory random batches (so the input pipeline is not what is measured), Adam, the first
``--warmup`` steps (tracing, allocation) excluded. Each model is measured in the same process,
one after the other, so their ratio is meaningful even on a shared, noisy machine; absolute
figures vary from run to run.

``gpu`` runs under whichever Keras backend is available -- ``KERAS_BACKEND`` from the
environment, else the first importable of jax, torch, tensorflow -- and needs no TensorFlow (the
lent GPU machine has JAX and PyTorch with CUDA, no TensorFlow and no package registry). It
names the backend and the accelerator, and measures training images/s (``train_on_batch`` on
random data already on the device, SGD, the first ``--warmup`` steps excluded) of DenseNet
Models 1 and 2 and ResNet-18/34/50 at 64 px (Tiny ImageNet), the CIFAR ResNet-24 of seed 004
and the Multi-ResNet 200, k=5 of seed 003 at 32 px, each in float32, mixed_bfloat16 and
mixed_float16, with and without XLA (``jit_compile``; JAX always compiles with XLA), and
projects each paper's whole protocol (its training images / images/s). Without an accelerator
it says so and still runs (on the CPU). On the GPU machine, from the repository root::

    PYTHONPATH=.vendor:. KERAS_BACKEND=jax python tools/benchmark.py gpu
    PYTHONPATH=.vendor:. KERAS_BACKEND=torch python tools/benchmark.py gpu --models resnet18
    # split a long run (at most 10 minutes a command there), or stop starting configurations
    # after a budget (the rest are listed as not run, and the table is still recorded):
    ... gpu --models densenet_model1 densenet_model2 --precisions float32 mixed_bfloat16
    ... gpu --time-budget 420

Keras must travel with the working tree: ``python tools/vendor.py .vendor`` (here, before the
working tree is copied) puts keras and its pure-Python requirements (absl-py, rich and its
markdown-it-py/mdurl/pygments, namex, packaging) into ``.vendor/``, which must not be
git-ignored so that it is copied (or pass it as a carried path). h5py, optree and ml_dtypes
have compiled parts: the GPU machine's Python must already have them (JAX itself needs
ml_dtypes and, in recent versions, opt_einsum), or wheels for its Python and platform must be
copied and unpacked there; ``tools/vendor.py --check`` lists what the target Python lacks. The
table goes to docs/benchmarks.md unless ``--no-record``.
"""
import datetime
import os
import platform
import re
import sys
import time

from tinynet.evaluation.tables import markdown_table
from tinynet.experiment import OneLineParser, positive_float, positive_int, run_cli
from tinynet.projections import (EFFICIENCY, FORWARD_FLOPS, GPUS, PAPER_TIMES, PRECISIONS,
                                 SPEED_FLAGS, project_seconds, workloads)

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                   "benchmarks.md")


def _keras_backend_name():
    """The Keras backend in use (or that Keras will use), without importing Keras."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def machine():
    """CPU, cores, accelerators and software; TensorFlow is imported only when it is the Keras
    backend (otherwise the backend describes the accelerators)."""
    backend = _keras_backend_name()
    if backend != "tensorflow":
        return _machine_without_tensorflow(backend)
    import tensorflow as tf

    cpu = _cpu_name()
    gpus = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
            for g in tf.config.list_physical_devices("GPU")]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{cpu}, {cores} cores usable" + (f", GPU: {', '.join(gpus)}" if gpus else ", no GPU")
            + f"; TensorFlow {tf.__version__}, Python {platform.python_version()}")


def _cpu_name():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            found = re.search(r"model name\s*:\s*(.+)", f.read())
            cpu = found.group(1).strip() if found else cpu
    except OSError:
        pass
    return cpu


def _machine_without_tensorflow(backend):
    import keras

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    accelerators, _ = accelerator_names(backend)
    version = {"jax": lambda: __import__("jax").__version__,
               "torch": lambda: __import__("torch").__version__}.get(backend, lambda: "?")()
    return (f"{_cpu_name()}, {cores} cores usable"
            + (f", GPU: {', '.join(accelerators)}" if accelerators else ", no GPU")
            + f"; Keras {keras.__version__} on {backend} {version} (no TensorFlow), Python "
              f"{platform.python_version()}")


def record(section, table, notes):
    """Replaces (or appends) ``## section`` in docs/benchmarks.md."""
    stamp = datetime.date.today().isoformat()
    body = f"## {section}\n\nMeasured {stamp} on {machine()}.\n\n{table}\n\n{notes}\n"
    text = open(DOC).read() if os.path.exists(DOC) else (
        "# Benchmarks\n\nWritten by `tools/benchmark.py`; each section is replaced when its "
        "benchmark is run again.\n\n")
    pattern = re.compile(rf"^## {re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: body + "\n", text) if pattern.search(text) else (
        text.rstrip("\n") + "\n\n" + body)
    os.makedirs(os.path.dirname(DOC), exist_ok=True)
    with open(DOC, "w") as f:
        f.write(text.rstrip("\n") + "\n")


def build_for_training(name, width, num_classes=200, jit_compile=False, strategy=None,
                       **model_kwargs):
    """Registered model ``name`` compiled with Adam, built (and to be trained) in ``strategy``'s
    scope when one is given."""
    import contextlib

    import keras

    from tinynet.models import get_model
    from tinynet.training.distribute import prepare_model

    keras.utils.set_random_seed(0)
    if width is not None:
        model_kwargs["width"] = width
    with strategy.scope() if strategy else contextlib.nullcontext():
        model = get_model(name, num_classes=num_classes, **model_kwargs)
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"],
                      jit_compile=jit_compile)
    if strategy:
        prepare_model(model, strategy)
    return model


def measure_training(model, batch_size, resolution, steps, warmup, num_classes, strategy=None):
    """Training images/s of ``model`` on random in-memory batches (the first ``warmup`` steps,
    tracing included, not timed)."""
    import contextlib

    import keras
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((batch_size, resolution, resolution, 3), np.float32))
    y = tf.constant(rng.integers(0, num_classes, batch_size).astype(np.int32))
    data = tf.data.Dataset.from_tensors((x, y)).repeat()

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == warmup:
                self.start = time.perf_counter()

        def on_train_end(self, logs=None):
            self.seconds = time.perf_counter() - self.start

    timer = Timer()
    with strategy.scope() if strategy else contextlib.nullcontext():
        model.fit(data, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[timer],
                  shuffle=False)
    return steps * batch_size / timer.seconds


def train_throughput(name, batch_size, resolution, steps, warmup, width, num_classes=200,
                     jit_compile=False, **model_kwargs):
    """``(parameters, training images/s)`` of registered model ``name``."""
    model = build_for_training(name, width, num_classes, jit_compile, **model_kwargs)
    return model.count_params(), measure_training(model, batch_size, resolution, steps, warmup,
                                                  num_classes)


def cmd_train(args):
    rows = []
    for name in args.models:
        params, ips = train_throughput(name, args.batch_size, args.resolution, args.steps,
                                       args.warmup, args.width)
        rows.append((name, f"{params:,}", args.resolution, args.batch_size, f"{ips:.1f}",
                     f"{args.batch_size / ips * 1000:.0f}"))
        print(f"{name}: {ips:.1f} images/s", flush=True)
    table = markdown_table(["model", "parameters", "px", "batch", "train images/s", "ms/step"], rows)
    print(table)
    note = (f"`python tools/benchmark.py train` (width {args.width}, {args.steps} timed steps "
            f"after {args.warmup} warm-up steps, Adam, random in-memory inputs: the model's "
            f"training speed without the input pipeline). At this rate one of the paper's "
            f"200-step epochs at batch 64 takes {200 * args.batch_size / float(rows[0][4]):.0f} s "
            f"for {rows[0][0]}.")
    if args.record:
        record(f"Training throughput, {args.resolution} px, batch {args.batch_size}", table, note)
        print(f"recorded in {os.path.relpath(DOC)}")


RESNET_CONFIGS = {  # name: (compile with XLA, model arguments)
    "baseline (Keras BN, NHWC)": (False, {}),
    "fused BN": (False, {"batch_norm": "fused"}),
    "XLA": (True, {}),
    "NCHW": (False, {"data_format": "channels_first"}),
    "stochastic depth p_L 0.5": (False, {"stochastic_depth": 0.5, "seed": 0}),
}


def cmd_resnet(args):
    """Each speed feature of seed 001 alone against the baseline, per depth, in one process."""
    import tensorflow as tf

    rows = []
    for name in args.models:
        base = None
        for label, (jit, kwargs) in RESNET_CONFIGS.items():
            try:
                _, ips = train_throughput(name, args.batch_size, 64, args.steps, args.warmup,
                                          args.width, jit_compile=jit, variant="e", **kwargs)
            except (tf.errors.OpError, ValueError) as e:  # e.g. a layout a device lacks
                rows.append((name, label, "failed", type(e).__name__))
                continue
            base = base or ips
            rows.append((name, label, f"{ips:.1f}", f"{ips / base:.2f}x"))
            print(f"{name} {label}: {ips:.1f} images/s", flush=True)
    table = markdown_table(["model (variant e, 64 px stem)", "configuration", "train images/s",
                            "vs baseline"], rows)
    print(table)
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    if args.record:
        record(f"ResNet training speed-ups, {device}, batch {args.batch_size}", table,
               f"`python tools/benchmark.py resnet`: full-width ResNets (block e, tiny stem) at "
               f"64 px, Adam, random in-memory inputs, {args.steps} timed steps after "
               f"{args.warmup} warm-up steps; each feature alone against the baseline, all in "
               f"one process so that the ratios are comparable on a noisy machine. Stochastic "
               f"depth with p_L 0.5 runs about 3/4 of the residual branches on average (the "
               f"stem, shortcuts and head always run), so its bound is roughly 1.3x.")
        print(f"recorded in {os.path.relpath(DOC)}")


def cmd_cifar(args):
    """Training images/s and the time of one CIFAR-10 epoch (45,000 images, seed 004's split)
    for the design-space models, batch 128 at 32 px, with seed 004's optimizer."""
    from tinynet.models import model_info

    rows = []
    for name in args.models:
        params, ips = train_throughput(name, args.batch_size, 32, args.steps, args.warmup,
                                       1.0, num_classes=10)
        epoch = 45_000 / ips
        info = model_info(name)
        rows.append((name, f"{info.trainable_params:,}",
                     f"{info.paper_params:,}" if info.paper_params else "-", f"{ips:.1f}",
                     f"{epoch / 60:.1f} min", f"{200 * epoch / 3600:.1f} h"))
        print(f"{name}: {ips:.1f} images/s, {epoch:.0f} s per epoch", flush=True)
    table = markdown_table(["model", "trainable parameters", "printed (Table 1)", "train images/s",
                            "one epoch (45k images)", "200 epochs"], rows)
    print(table)
    if args.record:
        record(f"CIFAR-10 design space (seed 004), batch {args.batch_size}", table,
               f"`python tools/benchmark.py cifar`: full-width models at 32 px, 10 classes, "
               f"{args.steps} timed steps after {args.warmup} warm-up steps, random in-memory "
               f"inputs (the model's speed without the input pipeline), all in one process. "
               f"An epoch of the paper's protocol is 351 batches of 128 (45,000 training "
               f"images); the paper's headline run was 200 + 200 epochs.")
        print(f"recorded in {os.path.relpath(DOC)}")


def cmd_quick(args):
    """Times ``experiments/<experiment>.py --quick`` from scratch (data generation included)."""
    import json
    import subprocess
    import tempfile

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, os.path.join(repo, "experiments", f"{args.experiment}.py"),
               "--quick", "--run-dir", os.path.join(tmp, "run"),
               "--data-dir", os.path.join(tmp, "data")]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        with open(os.path.join(tmp, "run", "state.json")) as f:
            state = json.load(f)
        with open(os.path.join(tmp, "run", "config.json")) as f:
            classes = json.load(f)["data"]["num_classes"]
    table = markdown_table(["command", "epochs", "wall time", f"best val_accuracy ({classes} classes)"],
                           [(f"`python experiments/{args.experiment}.py --quick`",
                             state["completed_epochs"], f"{seconds:.0f} s",
                             f"{state['best_val_accuracy']:.3f}")])
    print(table)
    if args.record:
        record(f"--quick demo, {args.experiment}", table,
               f"Whole process: start-up, synthetic data generation, every stage, saving. "
               f"Chance is {1 / classes:.2g}.")
        print(f"recorded in {os.path.relpath(DOC)}")


def pipeline_throughput(image_set, recipe, parallel, batches, batch_size=128, warmup=2,
                        backend="imgaug"):
    """Images/s of ``train_dataset`` at the set's size with ``recipe`` run by ``backend``
    (recipe None: no augmentation)."""
    from tinynet.augment import get_augmenter
    from tinynet.data.pipeline import train_dataset

    augment = get_augmenter(recipe, backend) if recipe else None
    ds = train_dataset(image_set, seed=0, first_epoch=0, num_epochs=1,
                       steps_per_epoch=warmup + batches, batch_size=batch_size, sample_offset=0,
                       resolution=image_set.image_size, augment=augment,
                       num_parallel_calls=parallel)
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - start)


def cmd_pipeline(args):
    import tempfile

    import numpy as np

    from tinynet.augment import get_recipe, list_recipes
    from tinynet.data.datasets import get_dataset
    from tinynet.data.pipeline import ImageSet

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    calls = sorted({1, cores})
    with tempfile.TemporaryDirectory() as tmp:
        spec = dict(data_dir=os.path.join(tmp, "tiny"), num_classes=20, train_per_class=100,
                    val_per_class=1, test_images=1)
        on_disk = get_dataset("synthetic-tiny-imagenet", cache="none", **spec).train
        in_memory = get_dataset("synthetic-tiny-imagenet", cache="memory", **spec).train
        # the CIFAR recipes take 32 px images: the same images at half the size
        small = ImageSet(labels=in_memory.labels, image_size=32,
                         images=np.ascontiguousarray(in_memory.images[:, ::2, ::2]))
        rows = []
        for label, image_set in (("decode JPEGs from disk", on_disk),
                                 ("decoded in memory", in_memory)):
            rates = [pipeline_throughput(image_set, None, p, args.batches) for p in calls]
            rows.append([f"{label}, no augmentation", ""] + [f"{r:.0f}" for r in rates]
                        + [""] * (len(calls) + 1))
            print(f"{label}: {rates} images/s", flush=True)
        for recipe in args.recipes or list_recipes():
            image_set = small if get_recipe(recipe).input_size == 32 else in_memory
            rates = {b: [pipeline_throughput(image_set, recipe, p, args.batches, backend=b)
                         for p in calls] for b in ("imgaug", "native")}
            ratio = max(rates["native"]) / max(rates["imgaug"])
            rows.append([f"`{recipe}`", f"{image_set.image_size}"]
                        + [f"{r:.0f}" for r in rates["imgaug"]]
                        + [f"{r:.0f}" for r in rates["native"]] + [f"{ratio:.2f}x"])
            print(f"{recipe}: imgaug {rates['imgaug']} native {rates['native']} "
                  f"({ratio:.2f}x)", flush=True)
    head = [f"{n} call{'s' if n > 1 else ''}" for n in calls]
    table = markdown_table(["input pipeline, batch 128", "px"] + [f"imgaug, {h}" for h in head]
                           + [f"native, {h}" for h in head] + ["native / imgaug (best)"], rows)
    print(table)
    if args.record:
        record("Input pipeline: imgaug and native augmentation", table,
               f"`python tools/benchmark.py pipeline`: images/s out of `train_dataset` on "
               f"in-memory uint8 images ({args.batches} batches of 128 after 2 warm-up "
               f"batches; 2,000 generated images at 64 px, the same images at 32 px for the "
               f"CIFAR recipes; `num_parallel_calls` {' and '.join(map(str, calls))}, i.e. 1 "
               f"and all cores). The decode rows have no augmentation (their imgaug columns "
               f"are the pipeline alone). The ratio compares each backend's best column. "
               f"imgaug makes one Python call per batch (OpenCV and NumPy kernels, much of it "
               f"under the GIL); native is TensorFlow ops in the tf.data graph "
               f"(`tinynet.augment.native_backend`).")
        print(f"recorded in {os.path.relpath(DOC)}")


# Table V of seed 003 (one K80 = two GPUs), ms per training step: data-parallel pre-resnet of
# the same number of convolutions vs model-parallel multi-resnet 110. Batch 128: k=2 413 vs 462
# ms (slower), k=6 10% faster (no absolute figure printed).
TABLE_V = {(2, 32): (137, 136), (4, 32): (273, 238), (6, 32): (402, 341), (2, 128): (413, 462)}
SAME_CONVS = {2: 218, 4: 434, 6: 650}  # pre-resnet depth with as many convs as multi-resnet 110


def cmd_parallel(args):
    """Seed 003's Table V on the devices at hand: ms per step of multi-resnet 110 split over
    the devices (model parallel) against a pre-resnet of the same conv count replicated over
    them (data parallel, MirroredStrategy), and the unsplit multi-resnet on one device."""
    from tinynet.training.distribute import configure_devices, make_strategy

    devices = configure_devices(args.devices)  # before TensorFlow starts: logical CPUs
    mirrored = make_strategy("mirrored", devices, log=lambda line: None)
    rows = []
    for k in args.k:
        def ms_per_step(depth, kk, strategy=None, split=None):
            """{batch: ms per step} of one model, built once for every batch size."""
            extra = {"devices": split} if split else {}
            model = build_for_training("multi_resnet", args.width, 10, strategy=strategy,
                                       depth=depth, k=kk, block="basic", **extra)
            return {b: b / measure_training(model, b, 32, args.steps, args.warmup, 10,
                                            strategy) * 1000 for b in args.batch_sizes}

        data_parallel = ms_per_step(SAME_CONVS[k], 1, strategy=mirrored)
        model_parallel = ms_per_step(110, k, split=devices)
        one_device = ms_per_step(110, k)
        for batch in args.batch_sizes:
            paper = TABLE_V.get((k, batch))
            rows.append((k, batch, f"pre-resnet {SAME_CONVS[k]}: {data_parallel[batch]:.0f}",
                         f"{model_parallel[batch]:.0f}", f"{one_device[batch]:.0f}",
                         f"{model_parallel[batch] / data_parallel[batch]:.2f}",
                         f"{paper[0]} vs {paper[1]}" if paper else "-"))
            print(f"k={k} batch {batch}: data parallel {data_parallel[batch]:.0f} ms, model "
                  f"parallel {model_parallel[batch]:.0f} ms, one device {one_device[batch]:.0f} "
                  f"ms", flush=True)
    table = markdown_table(
        ["k", "batch", "data parallel (mirrored) ms/step", "multi-resnet 110 model parallel",
         "multi-resnet 110 one device", "model / data parallel", "paper, K80 (data vs model)"],
        rows)
    print(table)
    cpu_only = all("CPU" in d for d in devices)
    note = (f"`python tools/benchmark.py parallel` on devices {', '.join(devices)} (width "
            f"{args.width}, {args.steps} timed steps after {args.warmup}, Adam, random "
            f"in-memory 32 px inputs). "
            + ("These are logical CPU devices sharing the same cores: the figures show the "
               "overhead of splitting and replicating, not a speed-up; the paper's comparison "
               "needs two GPUs. " if cpu_only else "")
            + "Model parallel: each block's k branches split over the devices "
              "(tinynet.layers.multi_residual); data parallel: the global batch split over "
              "replicas of a pre-resnet with as many convolutions.")
    if args.record:
        record(f"Model vs data parallelism (seed 003, Table V), {len(devices)} devices",
               table, note)
        print(f"recorded in {os.path.relpath(DOC)}")


def _denresnet_batches():
    """seed 000's batch size per backbone (``tinynet.papers.denresnet.SCHEDULE``)."""
    from tinynet.papers import get_paper

    return {backbone: batch for backbone, (batch, _) in get_paper("denresnet").SCHEDULE.items()
            if not backbone.endswith("v2")}


DENRESNET_BATCH = _denresnet_batches()


def cmd_transfer(args):
    """DenResNet's backbones (seed 000): training ms per step at the 64 px of the data and at
    the 224 px the images are scaled up to inside the model, and what a Tiny ImageNet epoch
    at the paper's batch size would take at that rate."""
    rows = []
    for backbone in args.backbones:
        for size in args.image_sizes:
            model = build_for_training(f"transfer_{backbone}", None, 200, image_size=size)
            ips = measure_training(model, args.batch_size, 64, args.steps, args.warmup, 200)
            ms = args.batch_size / ips * 1000
            batch = DENRESNET_BATCH.get(backbone, 64)
            hours = TINY_IMAGENET_TRAIN / ips / 3600
            rows.append((backbone, f"{model.count_params():,}", size, args.batch_size,
                         f"{ms:.0f}", f"{ms / args.batch_size:.1f}", batch,
                         f"{batch / ips:.1f}", f"{hours:.1f}"))
            print(f"{backbone} {size}px: {ms:.0f} ms/step at batch {args.batch_size}", flush=True)
            del model
            import keras
            keras.backend.clear_session()
    table = markdown_table(
        ["backbone", "parameters", "px in the model", "batch", "ms/step", "ms/image",
         "paper's batch", "s/step at it", "h per 100k-image epoch"], rows)
    print(table)
    note = (f"`python tools/benchmark.py transfer` ({args.steps} timed steps after "
            f"{args.warmup} warm-up steps, Adam, random 64 px inputs resized inside the model, "
            f"random initialisation: the speed does not depend on the weights). The last two "
            f"columns extrapolate linearly from the measured batch to the paper's batch and to "
            f"one pass over Tiny ImageNet's 100,000 training images; the paper reports about "
            f"15 min per epoch for the shallow backbones and over 120 min for the deepest on "
            f"one K80.")
    if args.record:
        record("DenResNet backbones (seed 000): training step time at 64 and 224 px",
               table, note)
        print(f"recorded in {os.path.relpath(DOC)}")


# ---------------------------------------------------------------------------------------------
# gpu: every paper's model on the accelerator, under any Keras backend (no TensorFlow needed)

BACKEND_ORDER = ("jax", "torch", "tensorflow")


def choose_backend():
    """``KERAS_BACKEND`` from the environment, else the first importable of jax, torch and
    tensorflow (set in the environment before Keras is imported); returns it."""
    import importlib.util

    chosen = os.environ.get("KERAS_BACKEND")
    if not chosen:
        chosen = next((b for b in BACKEND_ORDER if importlib.util.find_spec(b) is not None),
                      None)
        if chosen is None:
            from tinynet.errors import TinynetError
            raise TinynetError("no Keras backend is importable: install jax, torch or "
                               "tensorflow (or put them on PYTHONPATH)")
        os.environ["KERAS_BACKEND"] = chosen
    return chosen


def accelerator_names(backend):
    """``(names of the accelerators the backend sees, how it was asked)``; no names: none."""
    if backend == "jax":
        import jax

        devices = [d for d in jax.devices() if d.platform != "cpu"]
        return [d.device_kind for d in devices], "jax.devices()"
    if backend == "torch":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [torch.cuda.get_device_name(i) for i in range(count)], "torch.cuda"
    if backend == "tensorflow":
        import tensorflow as tf

        return [tf.config.experimental.get_device_details(g).get("device_name", g.name)
                for g in tf.config.list_physical_devices("GPU")], "tf.config"
    return [], backend


GPU_WORKLOADS = workloads()  # model -> its paper's whole protocol on the real data sizes
GPU_DEFAULT_MODELS = ("densenet_model1", "densenet_model2", "resnet18", "resnet34", "resnet50",
                      "nyu_resnet24", "multi_resnet200_k5")  # the transfer models: --models


def protocol_images(name, px):
    """The protocol's training images of ``name`` in ``px``-pixel equivalents (the work of a
    convolutional net scales with the pixels)."""
    return sum(n * (r / px) ** 2 for n, r in GPU_WORKLOADS[name].epochs)


def _seed(seed):
    """``keras.utils.set_random_seed`` without its ``import tensorflow`` off TensorFlow."""
    import random

    import keras
    import numpy as np

    backend = keras.backend.backend()
    if backend == "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    random.seed(seed)
    np.random.seed(seed)
    try:
        from keras.src.backend.common import global_state
        global_state.set_global_attribute("global_random_seed", seed)
    except ImportError:
        pass
    if backend == "torch":
        import torch
        torch.manual_seed(seed)


def gpu_throughput(name, batch_size, px, precision, jit_compile, steps, warmup, width=None):
    """Training images/s of registered model ``name`` with ``train_on_batch`` on one random
    batch already on the device (the first ``warmup`` steps, compilation included, excluded)."""
    import keras
    import numpy as np

    from tinynet.models import get_model

    keras.mixed_precision.set_global_policy(precision)
    try:
        _seed(0)
        kwargs = GPU_WORKLOADS[name].build_kwargs(px)
        classes = kwargs["num_classes"]
        if width is not None:
            kwargs["width"] = width
        model = get_model(name, **kwargs)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(),
                      jit_compile=jit_compile)
        rng = np.random.default_rng(0)
        # keras.ops tensors live on the backend's default device (the GPU when there is one)
        x = keras.ops.convert_to_tensor(rng.random((batch_size, px, px, 3), np.float32))
        y = keras.ops.convert_to_tensor(rng.integers(0, classes, batch_size).astype("int32"))
        for _ in range(warmup):
            model.train_on_batch(x, y)  # returns host floats: each step is synchronised
        start = time.perf_counter()
        for _ in range(steps):
            loss = model.train_on_batch(x, y)
        seconds = time.perf_counter() - start
        if not np.isfinite(loss):
            raise FloatingPointError(f"loss {loss}")
        return model.count_params(), steps * batch_size / seconds
    finally:
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session()


def _hours(seconds):
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def cmd_gpu(args):
    import keras

    backend = keras.backend.backend()
    accelerators, asked = accelerator_names(backend)
    if accelerators:
        where = f"accelerator: {', '.join(accelerators)} ({asked})"
    else:
        where = (f"no accelerator: {asked} sees no GPU; measuring on the CPU (the figures are "
                 f"the CPU's, not a GPU's)")
    print(f"Keras {keras.__version__}, backend {backend}; {where}", flush=True)
    jit_options = [True] if backend == "jax" else [False, True]
    rows = []
    started = time.perf_counter()
    for name in args.models:
        workload = GPU_WORKLOADS[name]
        px, batch = workload.px, args.batch_size or workload.batch_size
        for precision in args.precisions:
            for jit in jit_options:
                xla = "always (JAX)" if backend == "jax" else ("on" if jit else "off")
                if args.time_budget and time.perf_counter() - started > args.time_budget:
                    rows.append((name, px, batch, precision, xla, "not run",
                                 f"time budget ({args.time_budget:g} s) spent", "-"))
                    continue
                try:
                    params, ips = gpu_throughput(name, batch, px, precision, jit, args.steps,
                                                 args.warmup, args.width)
                except Exception as e:  # noqa: BLE001 (a configuration a backend lacks)
                    message = " ".join(str(e).split())[:120]
                    rows.append((name, px, batch, precision, xla, "failed",
                                 f"{type(e).__name__}: {message}", "-"))
                    print(f"{name} {precision} XLA {xla}: failed, {type(e).__name__}: {message}",
                          flush=True)
                    continue
                total = protocol_images(name, px) / ips
                rows.append((name, px, batch, precision, xla, f"{ips:.1f}",
                             f"{batch / ips * 1000:.1f}", _hours(total)))
                print(f"{name} {precision} XLA {xla}: {ips:.1f} images/s, whole protocol "
                      f"{_hours(total)}", flush=True)
    table = markdown_table(["model", "px", "batch", "precision", "XLA (jit_compile)",
                            "train images/s", "ms/step", "whole protocol (projected)"], rows)
    print(table)
    protocols = "; ".join(f"{n}: {GPU_WORKLOADS[n].what}" for n in args.models)
    note = (f"`python tools/benchmark.py gpu` under Keras' {backend} backend, {where}. Training "
            f"images/s of `train_on_batch` on one random batch already on the device (SGD "
            f"with momentum, sparse cross-entropy; {args.steps} timed steps after "
            f"{args.warmup} warm-up steps, each step synchronised by its returned loss), "
            f"width {args.width or 1.0}. "
            + ("JAX compiles every train step with XLA (`jit_compile` has no off switch "
               "there). " if backend == "jax" else "")
            + f"Whole protocol = the protocol's training images / images/s (validation, "
              f"input pipeline and augmentation not counted; images at other resolutions "
              f"counted by their pixels): {protocols}.")
    if args.record:
        record(f"Accelerator training throughput ({backend} backend"
               f"{', ' + accelerators[0] if accelerators else ', CPU'})", table, note)
        print(f"recorded in {os.path.relpath(DOC)}")


def count_forward_flops(names):
    """{(model, px): forward FLOPs} counted on the real models (TensorFlow backend)."""
    import keras

    from tinynet.models import get_model
    from tinynet.models.flops import forward_flops

    counted = {}
    for name in names:
        workload = GPU_WORKLOADS[name]
        for px in workload.resolutions:
            kwargs = workload.build_kwargs(px)
            model = get_model(name, **kwargs)
            counted[name, px] = forward_flops(model, kwargs.get("input_shape", (px, px, 3)))
            print(f"{name} at {px} px: {counted[name, px] / 1e9:.2f} GFLOPs forward", flush=True)
            keras.backend.clear_session()
    return counted


def _duration(seconds):
    if seconds < 60:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 600:
        return f"{seconds / 60:.1f} min"
    return _hours(seconds)


def _hours_pair(flops, gpu):
    """"float32 / the GPU's best 16-bit" hours of ``flops``."""
    cells = []
    for precision in ("float32", "mixed_bfloat16", "mixed_float16"):
        seconds = project_seconds(flops, gpu, precision)
        if seconds is not None:
            cells.append(_duration(seconds))
        if len(cells) == 2:
            break
    return " / ".join(cells)


def cmd_project(args):
    flops = dict(FORWARD_FLOPS)
    if args.count:
        counted = count_forward_flops(args.models)
        changed = {k: (FORWARD_FLOPS.get(k), v) for k, v in counted.items()
                   if FORWARD_FLOPS.get(k) != v}
        for key, (old, new) in changed.items():
            print(f"{key}: tinynet.projections.FORWARD_FLOPS has {old}, counted {new}")
        flops.update(counted)
    gpus = [g for g in GPUS if g != "K80"]
    rows = []
    for name in args.models:
        w = GPU_WORKLOADS[name]
        rows.append((w.paper, name, f"{flops[name, w.px] / 1e9:.2f} @ {w.px} px", w.what,
                     f"{w.training_images() / 1e6:.1f} M",
                     _hours(project_seconds(w.flops(flops), "K80", "float32")),
                     *(f"{_hours_pair(w.epoch_flops(flops=flops), g)} · "
                       f"{_hours_pair(w.flops(flops), g)}" for g in gpus)))
    table = markdown_table(["paper", "model", "forward GFLOPs", "protocol", "train images",
                            "K80 protocol"] + [f"{g}: epoch · protocol" for g in gpus], rows)
    paper_rows = []
    for t in PAPER_TIMES:
        w = GPU_WORKLOADS[t.model]
        paper_rows.append((t.model, t.source, f"{t.flops(w, flops) / 1e12:,.0f} TFLOP",
                           f"{t.implied_efficiency(w, flops):.2f}",
                           _duration(project_seconds(t.flops(w, flops), t.gpu, "float32"))))
    paper_table = markdown_table(["model", "the paper's time", "its work", f"implied share of "
                                  f"a K80's peak", f"projected here (efficiency "
                                  f"{EFFICIENCY['cuda']})"], paper_rows)
    print(table)
    print(paper_table)
    flags = "; ".join(f"{g}: `{' '.join(f)}`" for g, f in SPEED_FLAGS.items())
    note = (f"`python tools/benchmark.py project{' --count' if args.count else ''}`. "
            f"PROJECTIONS, not measurements: the FLOPs of each paper's protocol on the real "
            f"data sizes (3x the counted forward FLOPs per training image, the forward FLOPs "
            f"per validation image after every epoch; input pipeline and checkpoints not "
            f"counted) over each GPU's dense datasheet peak (`tinynet.projections.GPUS`) at "
            f"{EFFICIENCY['cuda']:.0%} of it on CUDA cores (float32 on the K80 and T4) and "
            f"{EFFICIENCY['tensor']:.0%} on tensor cores (TF32, which TensorFlow uses for "
            f"float32 from Ampere on, and 16-bit). Each cell gives float32 / 16-bit (bfloat16 "
            f"where the GPU has it, float16 on the T4); epoch = one pass over the training set "
            f"at the last stage's resolution, with its validation. The CUDA-core efficiency "
            f"is calibrated on the papers' own K80 times (second table); the tensor-core one "
            f"is assumed, not measured. The DenseNet times (the original authors' "
            f"on Google Colab, as seed 002 reports them, the GPU not named) would need 0.77-0.86 "
            f"of one K80 GK210's peak, which a K80 does not reach: Colab also lent T4s and "
            f"P100s then, so those two times calibrate nothing. Speed flags per GPU: {flags}.")
    if args.record:
        record("Projected GPU training times (projections, not measurements)",
               table + "\n\n" + paper_table, note)
        print(f"recorded in {os.path.relpath(DOC)}")


def main(argv=None):
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="training images/s of registered models")
    p.add_argument("--models", nargs="+", default=["densenet_model1", "densenet_model2"])
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--resolution", type=positive_int, default=64)
    p.add_argument("--steps", type=positive_int, default=10)
    p.add_argument("--warmup", type=positive_int, default=2)
    p.add_argument("--width", type=positive_float, default=1.0)
    p.add_argument("--no-record", dest="record", action="store_false",
                   help="print only; do not write docs/benchmarks.md")
    r = sub.add_parser("resnet", help="ResNet images/s: fused BN, XLA, NCHW, stochastic depth")
    r.add_argument("--models", nargs="+", default=["resnet18", "resnet34", "resnet50"])
    r.add_argument("--batch-size", type=positive_int, default=32)
    r.add_argument("--steps", type=positive_int, default=4)
    r.add_argument("--warmup", type=positive_int, default=2)
    r.add_argument("--width", type=positive_float, default=1.0)
    r.add_argument("--no-record", dest="record", action="store_false")
    c = sub.add_parser("cifar", help="seed 004's CIFAR-10 models: images/s and epoch time")
    c.add_argument("--models", nargs="+", default=["nyu_resnet24", "nyu_resnet10_1",
                                                   "nyu_resnet20", "nyu_resnet86"])
    c.add_argument("--batch-size", type=positive_int, default=128)
    c.add_argument("--steps", type=positive_int, default=3)
    c.add_argument("--warmup", type=positive_int, default=2)
    c.add_argument("--no-record", dest="record", action="store_false")
    q = sub.add_parser("quick", help="wall time of an experiment's --quick demo")
    q.add_argument("--experiment", default="densenet_model1")
    q.add_argument("--no-record", dest="record", action="store_false")
    pl = sub.add_parser("pipeline", help="input pipeline images/s, decode-only and per recipe")
    pl.add_argument("--batches", type=positive_int, default=10)
    pl.add_argument("--recipes", nargs="+", default=None, help="default: every recipe")
    pl.add_argument("--no-record", dest="record", action="store_false")
    pa = sub.add_parser("parallel", help="seed 003's Table V: model- vs data-parallel ms/step")
    pa.add_argument("--devices", default="2",
                    help="GPU:0,GPU:1 or a count (logical CPU devices without GPUs)")
    pa.add_argument("--k", type=positive_int, nargs="+", default=[2, 4, 6])
    pa.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[32, 128])
    pa.add_argument("--steps", type=positive_int, default=5)
    pa.add_argument("--warmup", type=positive_int, default=2)
    pa.add_argument("--width", type=positive_float, default=1.0)
    pa.add_argument("--no-record", dest="record", action="store_false")
    t = sub.add_parser("transfer", help="seed 000's backbones: ms/step at 64 and 224 px")
    t.add_argument("--backbones", nargs="+", choices=sorted(DENRESNET_BATCH) + [
        "resnet50v2", "resnet101v2", "resnet152v2"], default=list(DENRESNET_BATCH))
    t.add_argument("--image-sizes", type=positive_int, nargs="+", default=[64, 224])
    t.add_argument("--batch-size", type=positive_int, default=8)
    t.add_argument("--steps", type=positive_int, default=3)
    t.add_argument("--warmup", type=positive_int, default=1)
    t.add_argument("--no-record", dest="record", action="store_false")
    g = sub.add_parser("gpu", help="the papers' models on the accelerator, any Keras backend "
                                   "(jax, torch or tensorflow; no TensorFlow needed)")
    g.add_argument("--models", nargs="+", default=list(GPU_DEFAULT_MODELS),
                   choices=list(GPU_WORKLOADS))
    g.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    g.add_argument("--batch-size", type=positive_int, default=None,
                   help="one batch size for every model (default: each paper's)")
    g.add_argument("--steps", type=positive_int, default=20)
    g.add_argument("--warmup", type=positive_int, default=3)
    g.add_argument("--width", type=positive_float, default=None,
                   help="width multiplier (default: the papers' widths)")
    g.add_argument("--time-budget", type=positive_float, default=None, metavar="SECONDS",
                   help="start no configuration after this many seconds; the rest are listed "
                        "as not run (a lent machine's command has a time limit)")
    g.add_argument("--no-record", dest="record", action="store_false",
                   help="print only; do not write docs/benchmarks.md")
    pr = sub.add_parser("project", help="projected GPU epoch and protocol times from counted "
                                        "FLOPs (projections, not measurements)")
    pr.add_argument("--models", nargs="+", default=list(GPU_WORKLOADS),
                    choices=list(GPU_WORKLOADS))
    pr.add_argument("--count", action="store_true",
                    help="recount the forward FLOPs on the real models (TensorFlow; minutes)")
    pr.add_argument("--no-record", dest="record", action="store_false")
    args = parser.parse_args(argv)
    if args.command == "gpu":
        choose_backend()  # before anything imports Keras
    if args.command == "parallel":
        from tinynet.training.distribute import parse_devices
        args.devices = parse_devices(args.devices)
        if (args.devices if isinstance(args.devices, int) else len(args.devices)) < 2:
            parser.error("--devices: model and data parallelism need at least two devices")
        unknown = sorted(set(args.k) - set(SAME_CONVS))
        if unknown:
            parser.error(f"--k {unknown}: Table V has k = 2, 4, 6")
    from tinynet.models import list_models
    unknown = set(getattr(args, "models", [])) - set(list_models())
    if unknown:
        parser.error(f"unknown model(s) {sorted(unknown)}; known: {', '.join(list_models())}")
    {"train": cmd_train, "quick": cmd_quick, "pipeline": cmd_pipeline,
     "resnet": cmd_resnet, "cifar": cmd_cifar, "parallel": cmd_parallel,
     "transfer": cmd_transfer, "gpu": cmd_gpu, "project": cmd_project}[args.command](args)


if __name__ == "__main__":
    run_cli(main)
