"""The command line shared by every experiment script: flags, data loading, error handling.

Each script in ``experiments/`` states its paper's protocol as data and calls ``main``; this
module turns the common flags into a resolved protocol, a dataset and a run directory. A user
mistake (``TinynetError``, or a bad flag) ends with one line on stderr and exit status 2.
"""
import argparse
import dataclasses
import os
import signal
import sys

from tinynet.errors import TinynetError


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is reported on one line instead of usage + error, and flags
    must be spelled out (no prefix abbreviations: ``--determ`` is not ``--deterministic``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


@dataclasses.dataclass(frozen=True)
class QuickPreset:
    """``--quick``: a CPU demo on generated data that still runs every stage of the protocol."""

    width: float = 0.125
    steps_per_epoch: int = 12
    epochs_scale: float = 0.05
    synthetic: dict = dataclasses.field(default_factory=lambda: dict(
        num_classes=20, train_per_class=60, val_per_class=10, test_images=20))


def add_common_arguments(parser, experiment, quick=QuickPreset()):
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", choices=["tiny-imagenet", "synthetic"], default=None,
                   help="tiny-imagenet (downloaded or found in --data-dir) or a generated "
                        "dataset in the same layout (default: tiny-imagenet; synthetic with --quick)")
    g.add_argument("--data-dir", default=None,
                   help="folder holding tiny-imagenet-200/ or its zip (default: data/); for "
                        "synthetic data, where it is generated (default: data/synthetic)")
    g.add_argument("--cache", choices=["auto", "memory", "none"], default="auto",
                   help="keep decoded images in memory (auto: when they take under half the "
                        "free memory)")
    g.add_argument("--skip-corrupt", action="store_true",
                   help="skip and count corrupt images instead of stopping at the first one")
    g.add_argument("--no-download", action="store_true",
                   help="never download; fail if the dataset is not in --data-dir")
    g.add_argument("--interpolation", default="nearest",
                   choices=["nearest", "bilinear", "bicubic", "area", "lanczos3"],
                   help="resizing to a stage's resolution (default nearest, as the original)")
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
    g.add_argument("--data-format", choices=["channels_last", "channels_first"], default=None,
                   help="the model's internal layout (input stays NHWC); default Keras'")
    g.add_argument("--seed", type=int, default=0, help="seed for weights, data order, augmentation")
    g.add_argument("--deterministic", action="store_true",
                   help="TensorFlow op determinism: a resumed run is bit-identical to an "
                        "uninterrupted one (slower on GPU)")
    g.add_argument("--restart", action="store_true",
                   help="discard the run in --run-dir and start over")
    g.add_argument("--quick", action="store_true",
                   help=f"CPU demo: synthetic data, width {quick.width:g}, "
                        f"{quick.steps_per_epoch} steps per epoch, epochs x{quick.epochs_scale:g}")


def resolve_quick(args, experiment, preset=QuickPreset()):
    """Fills flags left unset from the ``--quick`` preset (explicit flags always win)."""
    if args.quick:
        args.dataset = args.dataset or "synthetic"
        args.width = args.width or preset.width
        args.steps_per_epoch = args.steps_per_epoch or preset.steps_per_epoch
        args.epochs_scale = args.epochs_scale or preset.epochs_scale
    args.dataset = args.dataset or "tiny-imagenet"
    args.width = args.width or 1.0
    args.epochs_scale = args.epochs_scale or 1.0
    args.run_dir = args.run_dir or os.path.join("runs", experiment + ("-quick" if args.quick else ""))
    if args.data_dir is None:
        args.data_dir = os.path.join("data", "synthetic") if args.dataset == "synthetic" else "data"
    args.synthetic_spec = preset.synthetic if args.quick else dict(
        num_classes=20, train_per_class=100, val_per_class=20, test_images=20)
    return args


def load_tiny_imagenet_data(args, image_size=64):
    """The dataset named by the flags, decoded, as a ``runner.TrainData``."""
    from tinynet.data import tiny_imagenet
    from tinynet.data.pipeline import load_split
    from tinynet.data.synthetic import ensure_synthetic_tiny_imagenet
    from tinynet.training.runner import TrainData

    if args.dataset == "synthetic":
        root = ensure_synthetic_tiny_imagenet(args.data_dir, **args.synthetic_spec)
    else:
        root = tiny_imagenet.prepare(args.data_dir, allow_download=not args.no_download)
    index = tiny_imagenet.load_index(root)
    train = load_split(index.train, image_size, args.cache, args.skip_corrupt)
    val = load_split(index.val, image_size, args.cache, args.skip_corrupt)
    description = {"dataset": args.dataset, "root": os.path.abspath(root),
                   "num_train": len(train), "num_val": len(val),
                   "num_classes": index.num_classes, "in_memory": train.in_memory}
    return TrainData(train=train, val=val, class_names=index.class_names, description=description)


DETERMINISTIC_ENV = {"TF_NUM_INTEROP_THREADS": "1", "PYTHONHASHSEED": "0"}


def reexec_for_determinism():
    """Restarts this process with ``DETERMINISTIC_ENV`` unless it already has it.

    Op determinism alone does not make two runs agree bit for bit on CPU: measured here
    (TF 2.21), about one run in four of the same training steps ended with different last bits
    while independent graph ops ran concurrently on the inter-op thread pool; with one inter-op
    thread, every run agreed. (Intra-op parallelism -- the threads inside one convolution --
    is kept.) The hash seed is fixed too so that nothing in graph construction that iterates
    over a set of strings can change between runs. Both settings are read when TensorFlow
    starts, hence the re-exec. The input pipeline keeps its parallelism through a private
    thread pool (``tinynet.data.pipeline``).
    """
    if any(os.environ.get(k) != v for k, v in DETERMINISTIC_ENV.items()):
        env = dict(os.environ, **DETERMINISTIC_ENV)
        os.execve(sys.executable, [sys.executable] + sys.argv, env)


def run_experiment(args, protocol, model_name, model_kwargs=None):
    """Loads the data the flags name and runs ``protocol`` (already resolved from the script's
    data) with the command-line overrides applied; returns the trained model."""
    from tinynet.training.protocol import describe
    from tinynet.training.runner import run_protocol

    data = load_tiny_imagenet_data(args)
    protocol = protocol.scaled(args.epochs_scale).with_steps(args.steps_per_epoch)
    print(describe(protocol, len(data.train)), flush=True)
    model_kwargs = dict(model_kwargs or {}, width=args.width)
    if args.data_format:
        model_kwargs["data_format"] = args.data_format
    return run_protocol(protocol, model_name=model_name, model_kwargs=model_kwargs, data=data,
                        run_dir=args.run_dir, seed=args.seed, deterministic=args.deterministic,
                        restart=args.restart, interpolation=args.interpolation,
                        log=lambda line: print(line, flush=True))


def run_cli(main, argv=None):
    """Runs ``main(argv)``; user mistakes become one line on stderr and exit status 2, and a
    Ctrl-C says how to resume."""
    if argv is None and "--deterministic" in sys.argv[1:]:
        reexec_for_determinism()
    try:
        main(argv)
    except TinynetError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume from the last finished epoch",
              file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
