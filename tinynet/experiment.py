"""The command line shared by every experiment script: flags, data loading, error handling.

Each paper of ``tinynet.papers`` states its protocol as data and calls ``run_experiment``; this
module turns the common flags into a resolved protocol, a dataset and a run directory. A user
mistake (``TinynetError``, or a bad flag) ends with one line on stderr and exit status 2.
"""
import argparse
import dataclasses
import math
import os
import signal
import sys

from tinynet.errors import (Preempted, TinynetError, clear_interrupts, interrupt_requested,
                            note_interrupt)


class WorkerDone(Exception):
    """Raised after training in a multi-worker member other than the chief: what a script does
    after training (evaluation, tables) reads and writes the run directory, the chief's job.
    ``run_cli`` ends the process with status 0."""


class DryRunDone(Exception):
    """Raised by ``run_experiment`` under ``--dry-run`` once the flags, data and model are
    checked; ``run_cli`` ends the process with status 0, skipping what follows training."""


def program_name(experiment):
    """What a paper's command line calls itself in messages: ``<experiment>.py`` when it runs
    as ``python experiments/<experiment>.py``, else ``tinynet <experiment>``."""
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return script if script == f"{experiment}.py" else f"tinynet {experiment}"


def command_line():
    """This process's command as typed, after the interpreter (``experiments/x.py --quick``,
    ``-m tinynet x --quick``): what config.json records and a re-execution repeats."""
    return list(getattr(sys, "orig_argv", [sys.executable] + sys.argv)[1:])


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is reported on one line instead of usage + error, and flags
    must be spelled out (no prefix abbreviations: ``--determ`` is not ``--deterministic``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        if message.endswith("expected one argument"):
            # argparse takes a value starting with "-" (-5m) for a flag of its own
            flag = message.split(":")[0].replace("argument ", "").split("/")[-1]
            message += (f" (a value that starts with '-' must be attached: "
                        f"{flag}=<value>)")
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


SEED_RANGE = (0, 2 ** 32 - 1)  # what numpy.random.seed and keras.utils.set_random_seed accept


def _bound(value):
    return str(value) if isinstance(value, int) else f"{value:g}"


def number_in(what, low=None, high=None, *, integer=False, low_open=False, high_open=False,
              accepted=None):
    """An argparse type: a number (``integer``: an integer) with ``low <= value <= high``
    (``low_open``/``high_open``: strict; None: unbounded). Infinity and NaN are refused, since
    nothing downstream can use them; the message names the accepted range (``accepted``
    overrides its wording)."""
    if accepted is None:
        kind = "an integer" if integer else "a finite number"
        if high is None:
            accepted = f"{kind} {'>' if low_open else '>='} {_bound(low)}"
        else:
            accepted = (f"{kind} in {'(' if low_open else '['}{_bound(low)}, {_bound(high)}"
                        f"{')' if high_open else ']'}")

    def parse(text):
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            value = None
        if value is None or not (integer or math.isfinite(value)) or (
                low is not None and (value <= low if low_open else value < low)) or (
                high is not None and (value >= high if high_open else value > high)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r} (accepted: "
                                             f"{accepted})")
        return value
    return parse


positive_int = number_in("a positive integer", 1, integer=True)
non_negative_int = number_in("an integer >= 0", 0, integer=True)
positive_float = number_in("a positive number", 0, low_open=True)
non_negative_float = number_in("a number >= 0", 0)
random_seed = number_in("a seed", *SEED_RANGE, integer=True,
                        accepted=f"an integer in [0, 2**32-1] = [0, {SEED_RANGE[1]}], the seeds "
                                 f"NumPy and TensorFlow take")


def parse_interval(text):
    """``--checkpoint-every``: ``"10m"``, ``"90s"``, ``"2h"`` -> ``("seconds", n)``;
    ``"500steps"`` -> ``("steps", n)``; ``"off"``/``"0"`` -> None. Raises ``ValueError`` (naming
    the accepted range) for anything else, infinity and NaN included."""
    text = str(text).strip().lower()
    if text in ("off", "0", "none", ""):
        return None
    for suffix, unit, scale in (("steps", "steps", 1), ("step", "steps", 1), ("h", "seconds", 3600),
                                ("m", "seconds", 60), ("s", "seconds", 1)):
        if text.endswith(suffix):
            number = text[:-len(suffix)].strip()
            try:
                value = float(number) * scale
            except ValueError:
                break
            if math.isfinite(value) and value > 0 and (unit == "seconds" or value == int(value)):
                return unit, (int(value) if unit == "steps" else value)
            break
    raise ValueError(f"expected a duration like 10m, 90s, 2h, a step count like 500steps, or "
                     f"off; got {text!r} (accepted: a finite duration > 0, or a whole number "
                     f"of steps >= 1)")


def checkpoint_interval(text):
    try:
        return parse_interval(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


@dataclasses.dataclass(frozen=True)
class QuickPreset:
    """``--quick``: a CPU demo on generated data that still runs every stage of the protocol."""

    width: float = 0.125
    steps_per_epoch: int = 12
    epochs_scale: float = 0.05
    synthetic: dict = dataclasses.field(default_factory=lambda: dict(
        num_classes=20, train_per_class=60, val_per_class=10, test_images=20))
    # Builder keyword arguments for the demo's model only, which the script passes to
    # run_experiment under --quick (recorded in config.json's model_kwargs). What a protocol
    # of a hundred steps needs and a few dozen do not give: a BatchNormalization momentum of
    # 0.99 leaves 0.99 ** steps of the initial moving statistics, so a short demo would be
    # validated with nearly-initial ones.
    model_kwargs: dict = dataclasses.field(default_factory=dict)


def add_common_arguments(parser, experiment, quick=QuickPreset(), dataset="tiny-imagenet"):
    """The flags every experiment script shares; ``dataset`` is the script's default dataset
    (``--quick`` uses its generated twin)."""
    from tinynet.augment import list_backends
    from tinynet.data.datasets import list_datasets
    from tinynet.training.distribute import STRATEGIES

    parser.set_defaults(default_dataset=dataset)
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", choices=list_datasets() + ["synthetic"], default=None,
                   help=f"a registered dataset (default: {dataset}; its generated twin "
                        f"synthetic-... with --quick; 'synthetic' = synthetic-tiny-imagenet)")
    g.add_argument("--data-dir", default=None,
                   help="folder holding the dataset or its archive (default: data/); for "
                        "generated data, where it is made (default: data/<dataset>)")
    g.add_argument("--cache", choices=["auto", "memory", "none"], default="auto",
                   help="Tiny ImageNet: keep decoded images in memory (auto: when they take "
                        "under half the free memory)")
    g.add_argument("--skip-corrupt", action="store_true",
                   help="skip and count corrupt images instead of stopping at the first one")
    g.add_argument("--no-download", action="store_true",
                   help="never download; fail if the dataset is not in --data-dir")
    g.add_argument("--val-split", type=non_negative_int, default=None,
                   help="CIFAR: training images held out for validation (0: validate on the "
                        "test set)")
    g.add_argument("--split-seed", type=random_seed, default=None,
                   help="CIFAR: seed of the permutation that holds out --val-split images")
    g.add_argument("--interpolation", default="nearest",
                   choices=["nearest", "bilinear", "bicubic", "area", "lanczos3"],
                   help="resizing to a stage's resolution (default nearest, as the original)")
    g.add_argument("--augment-backend", choices=list_backends(), default="imgaug",
                   help="the library that runs the augmentation recipes")
    g = parser.add_argument_group("run")
    g.add_argument("--run-dir", default=None,
                   help=f"run directory: a path, a Drive mount or gs://... "
                        f"(default: runs/{experiment}, runs/{experiment}-quick with --quick)")
    g.add_argument("--epochs-scale", type=positive_float, default=None,
                   help="multiply every stage's epochs (each stage keeps at least 1)")
    g.add_argument("--steps-per-epoch", type=positive_int, default=None,
                   help="override every stage's steps per epoch")
    g.add_argument("--width", type=positive_float, default=None,
                   help="multiply every hidden layer's filters (1.0 = the paper's model)")
    g.add_argument("--data-format", choices=["auto", "channels_last", "channels_first"],
                   default=None, help="the model's internal layout (input stays NHWC); "
                                      "default Keras'; auto: the faster, measured at start")
    g.add_argument("--seed", type=random_seed, default=0,
                   help="seed for weights, data order, augmentation (0 to 2**32-1)")
    g.add_argument("--deterministic", action="store_true",
                   help="TensorFlow op determinism: a resumed run is bit-identical to an "
                        "uninterrupted one (slower on GPU)")
    g.add_argument("--restart", action="store_true",
                   help="start over in --run-dir: a finished run there is kept in "
                        "previous-run-<date>-<time>/, an unfinished one discarded")
    g.add_argument("--progress-every", type=non_negative_float, default=None,
                   metavar="SECONDS",
                   help="without a terminal, a progress line inside each epoch every SECONDS "
                        "(default $TINYNET_PROGRESS_SECONDS, else 30; 0: none); a terminal "
                        "shows a progress bar")
    g.add_argument("--verbose", action="store_true",
                   help="show TensorFlow's C++ start-up log lines (hidden otherwise; real "
                        "warnings and errors always show)")
    g.add_argument("--dry-run", action="store_true",
                   help="check the flags, the data and the model, print the protocol and the "
                        "model's size, and exit without training (the run directory is not "
                        "touched)")
    g.add_argument("--checkpoint-every", type=checkpoint_interval,
                   default=None, metavar="10m|90s|500steps",
                   help="also checkpoint inside an epoch this often (default: off, or the "
                        "experiment's own; 'off' to disable); SIGTERM always checkpoints at "
                        "the next step and exits 143")
    g.add_argument("--quick", action="store_true",
                   help=f"CPU demo: generated data, width {quick.width:g}, "
                        f"{quick.steps_per_epoch} steps per epoch, epochs x{quick.epochs_scale:g}")
    g = parser.add_argument_group(
        "hyperparameters (default: the protocol's own; tools/tune.py searches them)")
    g.add_argument("--lr-scale", type=positive_float, default=None, metavar="F",
                   help="multiply every learning rate the protocol sets (each optimizer's "
                        "learning_rate and every lr policy's rates)")
    g.add_argument("--weight-decay", type=non_negative_float, default=None, metavar="X",
                   help="set every optimizer's weight decay, in its own convention (coupled or "
                        "decoupled); refused where the protocol's optimizer has none")
    g.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                   help="every stage's batch size (a stage with its own steps per epoch keeps "
                        "them)")
    from tinynet.training.precision import PRECISIONS

    g = parser.add_argument_group("speed (see docs/benchmarks.md)")
    g.add_argument("--backend", choices=KERAS_BACKENDS, default=None,
                   help="Keras backend (default: $KERAS_BACKEND, else tensorflow); tf.data "
                        "feeds every backend")
    g.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="Keras dtype policy; mixed: 16-bit compute, float32 variables, "
                        "classifier and loss (float16 adds loss scaling)")
    g.add_argument("--jit-compile", choices=["auto", "on", "off"], nargs="?", const="on",
                   default="auto", help="XLA-compile the training step (auto: Keras' choice, "
                                        "on a GPU yes); a bare --jit-compile means on")
    g.add_argument("--augment-on", choices=["cpu", "device"], default="cpu",
                   help="where the augmentation runs: in tf.data on the CPU, or as the first "
                        "step of the training step (needs --augment-backend native)")
    g.add_argument("--data-on-device", action="store_true",
                   help="keep the decoded training set on the accelerator and gather batches "
                        "there (in-memory datasets; implies --augment-on device)")
    g = parser.add_argument_group("devices (see tinynet.training.distribute)")
    g.add_argument("--strategy", choices=STRATEGIES, default="default",
                   help="tf.distribute strategy: one device, mirrored (local devices), "
                        "multiworker (TF_CONFIG), tpu; the protocol's batch size stays global")
    g.add_argument("--devices", default=None,
                   help="devices for --strategy default/mirrored: GPU:0,GPU:1 or a count "
                        "(CPU:N or a count without GPUs makes logical CPU devices)")
    g.add_argument("--sync-bn", action="store_true",
                   help="BatchNormalization statistics over the global batch (all replicas)")
    g.add_argument("--model-parallel", default=None, metavar="DEV,DEV,...",
                   help="models with parallel branches (Multi-ResNet): split each block's "
                        "branches over these devices (or a count)")


KERAS_BACKENDS = ("tensorflow", "jax", "torch")
JIT_COMPILE = {"auto": "auto", "on": True, "off": False}


def select_backend(name):
    """Makes ``name`` Keras' backend (KERAS_BACKEND), before Keras is imported; None keeps
    the environment's choice."""
    if name is None:
        return os.environ.get("KERAS_BACKEND", "tensorflow")
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend") and keras.backend.backend() != name:
        raise TinynetError(f"--backend {name}: Keras is already running on "
                           f"{keras.backend.backend()} in this process; start a new one")
    os.environ["KERAS_BACKEND"] = name
    return name


def resolve_quick(args, experiment, preset=QuickPreset()):
    """Fills flags left unset from the ``--quick`` preset (explicit flags always win) and the
    defaults that follow from other flags; no side effect (``set_up`` makes them)."""
    from tinynet.data.datasets import ALIASES, SYNTHETIC_OF, default_data_dir

    if hasattr(args, "backend"):
        args.backend = args.backend or os.environ.get("KERAS_BACKEND", "tensorflow")
    if getattr(args, "data_on_device", False):
        args.augment_on = "device"
    default = getattr(args, "default_dataset", "tiny-imagenet")
    if args.quick:
        args.dataset = args.dataset or SYNTHETIC_OF.get(default, default)
        args.width = args.width or preset.width
        args.steps_per_epoch = args.steps_per_epoch or preset.steps_per_epoch
        args.epochs_scale = args.epochs_scale or preset.epochs_scale
    args.dataset = ALIASES.get(args.dataset, args.dataset) or default
    args.width = args.width or 1.0
    args.epochs_scale = args.epochs_scale or 1.0
    args.run_dir = args.run_dir or os.path.join("runs", experiment + ("-quick" if args.quick else ""))
    if args.data_dir is None:
        args.data_dir = default_data_dir(args.dataset)
    args.synthetic_spec = preset.synthetic if args.quick else {}
    return args


def check_input_flags(args):
    """The input flags' combinations that cannot run, refused before the data is loaded (a
    generated dataset would otherwise be written first)."""
    from tinynet.data.device_input import check_device_input

    data_on_device = getattr(args, "data_on_device", False)
    check_device_input(getattr(args, "augment_on", "cpu"), data_on_device,
                       getattr(args, "augment_backend", "imgaug"))
    if data_on_device and getattr(args, "cache", "auto") == "none":
        raise TinynetError("--data-on-device keeps the decoded training set on the accelerator, "
                           "which needs it in memory first; drop --cache none (or "
                           "--data-on-device)")


BACKEND_PACKAGES = {"jax": ("jax", "JAX", "pip install jax"),
                    "torch": ("torch", "PyTorch", "pip install torch")}


def check_backend(backend, strategy="default"):
    """Refuses a Keras backend whose package is not installed, and a ``tf.distribute``
    strategy under a backend it cannot drive, before anything is imported or written."""
    import importlib.util

    if backend in BACKEND_PACKAGES:
        module, name, install = BACKEND_PACKAGES[backend]
        if importlib.util.find_spec(module) is None:
            raise TinynetError(f"--backend {backend}: {name} is not installed here; {install}, "
                               f"or choose --backend tensorflow")
        if strategy != "default":
            raise TinynetError(f"--strategy {strategy} is tf.distribute's, which drives only "
                               f"the tensorflow backend; pass --backend tensorflow with it, or "
                               f"drop --strategy to train on one device under {backend}")


def set_up(args):
    """The run's one set-up step, after parsing and before anything loads data or builds a
    model: Keras' backend (``KERAS_BACKEND``, before Keras is imported), the logical devices
    the device flags name, and the ``tf.distribute`` strategy (TensorFlow accepts logical
    devices and the multi-worker and TPU runtimes only before it starts, and loading data may
    start it; ``placement`` later gets the same strategy). Returns ``args``."""
    from tinynet.training.distribute import configure_devices, make_strategy, parse_devices

    check_backend(getattr(args, "backend", None), getattr(args, "strategy", "default"))
    if hasattr(args, "backend"):
        chosen = os.environ.get("KERAS_BACKEND", "tensorflow")
        select_backend(None if args.backend == chosen else args.backend)
    check_input_flags(args)
    for flag in ("devices", "model_parallel"):
        if getattr(args, flag, None):
            configure_devices(parse_devices(getattr(args, flag)))
    if getattr(args, "strategy", "default") != "default":
        make_strategy(args.strategy, parse_devices(args.devices) if args.devices else None,
                      log=lambda line: print(line, flush=True))
    return args


def dataset_arguments(args):
    """``get_dataset`` keyword arguments from the flags, refusing flags the dataset lacks."""
    from tinynet.data.datasets import dataset_arguments as accepted_by

    accepted = accepted_by(args.dataset)
    kwargs = {"data_dir": args.data_dir}
    wanted = {"cache": args.cache, "skip_corrupt": args.skip_corrupt,
              "download": not args.no_download, "val_split": args.val_split,
              "split_seed": args.split_seed}
    defaults = {"cache": "auto", "skip_corrupt": False, "download": True}
    for key, value in wanted.items():
        if value is None or (key in defaults and value == defaults[key] and key not in accepted):
            continue
        if key not in accepted:
            flag = "--no-download" if key == "download" else "--" + key.replace("_", "-")
            raise TinynetError(f"{flag} does not apply to dataset {args.dataset!r} (it "
                               f"accepts: {', '.join(accepted)})")
        kwargs[key] = value
    if args.dataset.startswith("synthetic"):
        spec = {k: v for k, v in args.synthetic_spec.items() if k in accepted}
        kwargs.update(spec)
    return kwargs


def load_data(args):
    """The dataset the flags name, decoded, as a ``tinynet.data.datasets.TrainData``."""
    from tinynet.data.datasets import get_dataset

    return get_dataset(args.dataset, **dataset_arguments(args))


def placement(args, model_name):
    """``(strategy, devices)`` from the device flags: the ``tf.distribute`` strategy, and the
    devices a model-parallel model splits its branches over (None: not split). Creates the
    logical CPU devices the flags name, so it runs before anything starts TensorFlow."""
    from tinynet.models import model_info
    from tinynet.training.distribute import configure_devices, make_strategy, parse_devices

    split = None
    if args.model_parallel:
        if "devices" not in model_info(model_name).arguments:
            raise TinynetError(f"--model-parallel does not apply to {model_name}: it has no "
                               f"parallel branches to split (Multi-ResNet has)")
        if args.strategy != "default" or args.devices:
            raise TinynetError("--model-parallel places the model on its devices itself; it "
                               "cannot be combined with --strategy or --devices")
        split = configure_devices(parse_devices(args.model_parallel))
        if len(split) < 2:
            raise TinynetError("--model-parallel needs at least two devices")
    devices = parse_devices(args.devices) if args.devices else None
    return make_strategy(args.strategy, devices, log=lambda line: print(line, flush=True)), split


def run_experiment(args, protocol, model_name, model_kwargs=None, data=None, init_from=None,
                   paper=None):
    """Loads the data the flags name (unless given) and runs ``protocol`` (already resolved
    from the script's data) with the command-line overrides applied; returns the model.
    ``paper``: the figures the paper reports (``tinynet.evaluation.reports``), recorded in
    config.json."""
    from tinynet.training.protocol import describe
    from tinynet.training.conventions import with_optimizer_convention
    from tinynet.training.runner import RunSettings, run_protocol

    strategy, split = placement(args, model_name)
    # the run's settings, checked as they are made: before the data is loaded
    settings = RunSettings(
        run_dir=args.run_dir, seed=args.seed, deterministic=args.deterministic,
        restart=args.restart, interpolation=args.interpolation,
        augment_backend=args.augment_backend, init_from=init_from,
        sync_batch_norm=args.sync_bn, model_parallel=split,
        checkpoint_every=args.checkpoint_every, paper=paper,
        precision=getattr(args, "precision", "float32"),
        jit_compile=JIT_COMPILE[getattr(args, "jit_compile", "auto")],
        augment_on=getattr(args, "augment_on", "cpu"),
        data_on_device=getattr(args, "data_on_device", False),
        progress_every=getattr(args, "progress_every", None))
    if args.run_dir is not None and not getattr(args, "dry_run", False):
        hold_run_directory(args.run_dir, strategy)
    data = data or load_data(args)
    protocol = protocol.scaled(args.epochs_scale).with_steps(args.steps_per_epoch)
    protocol = (protocol.with_lr_scale(getattr(args, "lr_scale", None))
                .with_weight_decay(getattr(args, "weight_decay", None))
                .with_batch_size(getattr(args, "batch_size", None)))
    if getattr(args, "keras_semantics", False):
        protocol = with_optimizer_convention(protocol, None)
    print(describe(protocol, len(data.train)), flush=True)
    from tinynet.models import model_info

    model_kwargs = dict(model_kwargs or {})
    if "width" in model_info(model_name).arguments:
        model_kwargs.setdefault("width", args.width)
    elif args.width != 1.0:
        raise TinynetError(f"--width does not apply to {model_name}: it has no width multiplier")
    if getattr(args, "dry_run", False):
        from tinynet.models import get_model
        model = get_model(model_name, num_classes=data.num_classes, **dict(
            model_kwargs, **({"data_format": args.data_format}
                             if args.data_format not in (None, "auto") else {})))
        print(f"dry run: {model_name} ({model.count_params():,} parameters) on "
              f"{data.spec.get('name')} ({len(data.train)} training images); would train in "
              f"{args.run_dir}", flush=True)
        raise DryRunDone()
    if args.data_format == "auto":
        model_kwargs["data_format"] = measured_data_format(args, protocol, model_name,
                                                           model_kwargs, data)
    elif args.data_format:
        model_kwargs["data_format"] = args.data_format
    model = run_protocol(protocol, model_name=model_name, model_kwargs=model_kwargs, data=data,
                         settings=settings, strategy=strategy,
                         log=lambda line: print(line, flush=True))
    from tinynet.training.distribute import is_chief
    if not is_chief(strategy):  # (a script runs one protocol per command under multiworker)
        raise WorkerDone()
    return model


def hold_run_directory(run_dir, strategy):
    """Takes the run directory's lock (``tinynet.training.lock``) for the rest of the command:
    before the data is loaded, so that a second process on the same ``--run-dir`` is refused
    at once, and until ``run_cli`` ends, so that what a script writes after training
    (evaluation, submissions) is covered too. Not taken where the folder cannot be written (a
    finished run on a read-only mount is still reported) or by a multi-worker member other
    than the chief (it writes nothing there)."""
    from tinynet.training import lock
    from tinynet.training.distribute import is_chief
    from tinynet.training.rundir import RunDirectory

    if is_chief(strategy) and RunDirectory(run_dir).check_writable():
        lock.acquire(run_dir, log=lambda line: print(line, flush=True))


def measured_data_format(args, protocol, model_name, model_kwargs, data):
    """``--data-format auto``: the layout the run directory's run chose, else the faster one
    measured now (``tinynet.training.layout``) at the first stage's batch and resolution."""
    from tinynet.models import model_info
    from tinynet.training.layout import measure_data_format
    from tinynet.training.precision import precision_policy
    from tinynet.training.rundir import RunDirectory

    if "data_format" not in model_info(model_name).arguments:
        raise TinynetError(f"--data-format does not apply to {model_name}: it has one layout")
    rd = RunDirectory(args.run_dir)
    if not args.restart and rd.has_config():
        chosen = (rd.read_config().get("model_kwargs") or {}).get("data_format")
        if chosen:
            print(f"--data-format auto: {chosen}, as {args.run_dir} chose", flush=True)
            return chosen
    stage = protocol.stages[0]
    with precision_policy(getattr(args, "precision", "float32")):
        return measure_data_format(model_name, model_kwargs, data.num_classes,
                                   stage.batch_size, stage.resolution,
                                   log=lambda line: print(line, flush=True))


def check_writable(path, flag):
    """``TinynetError`` now, before minutes of evaluation, where ``path`` cannot be written."""
    if "://" in path:
        return  # remote (gs://): the write itself reports a problem
    if os.path.isdir(path):
        raise TinynetError(f"{flag} {path} is a folder; give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise TinynetError(f"cannot write {flag} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise TinynetError(f"cannot write {flag} {path}: {parent} is not writable")


RESUME_LINE = "interrupted: re-run the same command to resume from the last checkpoint"


def run_cli(main, argv=None):
    """Runs ``main(argv)``; user mistakes become one line on stderr and exit status 2, and a
    Ctrl-C says how to resume (status 130) wherever it lands.

    A Ctrl-C arriving while TensorFlow runs Python code from C++ (a tf.data function, a
    callback) does not always surface as ``KeyboardInterrupt``: it may come out as the
    ``SystemError`` of a C function that "returned a result with an exception set", or as a
    TensorFlow error wrapping it. So the SIGINT handler records that it fired, and whatever
    exception then ends ``main`` is reported as the interruption it is. The files are safe
    either way: every write is atomic (``tinynet.io``)."""
    if argv is None and "--deterministic" in sys.argv[1:]:
        from tinynet.training.determinism import reexec_for_determinism
        reexec_for_determinism()
    if argv is None:  # a command line's own process (tests call main in-process with argv)
        from tinynet.quiet import quiet_tensorflow
        quiet_tensorflow("--verbose" in sys.argv[1:])
    def on_sigint(signum, frame):
        note_interrupt(signum)
        raise KeyboardInterrupt

    handler = None
    clear_interrupts()
    try:
        handler = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread (a notebook's worker): keep Python's default
        pass
    unraisable = sys.unraisablehook
    sys.unraisablehook = _quiet_interrupt_hook(unraisable)
    try:
        main(argv)
        if interrupt_requested():  # its KeyboardInterrupt was swallowed, and the work went on to its end
            raise KeyboardInterrupt
    except WorkerDone:
        print("this worker is done; the chief writes the run directory", flush=True)
    except DryRunDone:
        pass
    except SystemExit:
        raise
    except BaseException as e:
        if interrupt_requested() or isinstance(e, KeyboardInterrupt):
            _ignore_sigint()
            print(RESUME_LINE, file=sys.stderr, flush=True)
            sys.exit(128 + signal.SIGINT)
        if isinstance(e, TinynetError):
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        if isinstance(e, Preempted):
            sys.exit(128 + signal.SIGTERM)  # the runner said what it saved
        raise
    finally:
        if "tinynet.training.lock" in sys.modules:
            sys.modules["tinynet.training.lock"].release_all()
        if argv is None:
            # the command's process ends now: a Ctrl-C during TensorFlow's teardown would only
            # turn a finished run's status 0 into a bare "killed by SIGINT"
            _ignore_sigint()
        else:
            sys.unraisablehook = unraisable
            if handler is not None and not interrupt_requested():
                try:
                    signal.signal(signal.SIGINT, handler)
                except (ValueError, TypeError):
                    pass


def _quiet_interrupt_hook(previous):
    """``sys.unraisablehook`` that drops the ``KeyboardInterrupt`` of a Ctrl-C that landed in
    code Python cannot raise out of (a garbage-collector callback: JAX registers one, and
    Keras imports JAX), which Python would print as "Exception ignored in ..." with a
    traceback. The interrupt is recorded and reported once, with the resume line; anything
    else goes to ``previous``."""
    def hook(unraisable):
        if not (isinstance(unraisable.exc_value, KeyboardInterrupt) and interrupt_requested()):
            previous(unraisable)

    return hook


def _ignore_sigint():
    """A second Ctrl-C while the resume line is printed and the process ends changes nothing."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:
        pass
