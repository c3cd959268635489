"""Multi-ResNet on CIFAR-10 / CIFAR-100 (seed 003: Abdi & Nahavandi 2016, "Multi-Residual
Networks", arXiv 1609.05672; code: github masoudabd/multi-resnet, Lua Torch on
fb.resnet.torch). The models and their parameter counts: tinynet/models/multi_resnet.py.

Published test errors (%; CIFAR-10 unless noted; the original reports the best test error over
all epochs, i.e. selected on the test set):

    Table I    resnet 110 6.61, pre-resnet 110 6.37 (1.7M), multi-resnet 8 k=23 7.37 (1.7M),
               multi-resnet 14 k=10 6.42 (1.7M)
    Table II   (median of 5 runs) pre-resnet 24 / 68 / 110: 7.75 / 6.27 / 6.02;
               multi-resnet k=4 depth 8 / 20 / 30: 9.28 / 6.31 / 5.89
    Table III  multi-resnet 200 k=5 4.35 (CIFAR-100 20.42), multi-resnet 398 k=5 3.92 (20.59),
               pre-resnet 1001 4.62 (22.71)

Protocol: the code's (fb.resnet.torch's CIFAR recipe, ``opts.lua`` and ``train.lua``):
    data       CIFAR-10 or -100, 50,000 training images; the test set is the validation set
               (the original evaluated on it every epoch); ``--val-split N`` holds out N
               training images instead
    input      normalise with the code's per-dataset mean/std (0-255 scale: CIFAR-10 mean
               125.3, 123.0, 113.9, std 63.0, 62.1, 66.7; CIFAR-100 129.3, 124.1, 112.4 /
               68.2, 65.4, 70.4), then horizontal flip and a random 32x32 crop of the image
               padded by 4 pixels AFTER normalisation, so the border is the mean colour
               (recipe ``cifar_crop_flip_mean_border``)
    optimizer  SGD, Nesterov momentum 0.9 (dampening 0), weight decay 1e-4 coupled (Torch's
               ``weightDecay``: added to the gradient of every parameter, BN included), with
               Torch7's ``optim.sgd`` update: an lr-free momentum buffer, so the step after an
               lr drop moves with the new lr (``tinynet.training.torch_optimizers.TorchSGD``)
    BN         Torch7's moving variance (the unbiased batch variance)
    lr         0.1, x0.1 at epochs 81 and 122 (1-based; fixed epochs, whatever the length)
    batch      128 (the paper's tables; the code's default is 32), 164 epochs as the code
               (``--epochs 200`` as the paper says), floor(50000 / 128) = 390 batches per
               epoch of a seeded stream of permutations (the original: shuffled passes with a
               partial last batch)
``--keras-semantics`` trains with Keras' SGD instead, whose momentum buffer holds the lr
(m <- 0.9 m - lr g; Torch: v <- 0.9 v + g, step lr (g + 0.9 v)): the two agree while the lr is
constant, and after each lr step Keras' first updates still carry the old lr's momentum, a
transient that decays as 0.9^t; and with Keras' BN moving variance (tinynet.training.conventions).

The original saves no checkpoints and reports the best test error over epochs. Written to the
run directory, ``test_errors.json``: ``best_over_epochs_test_error`` (the original's figure,
selected on the test set: only when the test set is the validation set),
``final_epoch_test_error`` and, with a held-out validation split, the test error of the
best-validation model; each beside the paper's figure for the configuration, when it has one.

    python experiments/multi_resnet_cifar.py                          # multi-resnet 200, k=5
    python experiments/multi_resnet_cifar.py --block basic --depth 110 --k 1     # pre-resnet 110
    python experiments/multi_resnet_cifar.py --dataset cifar100 --depth 398 --k 5
    python experiments/multi_resnet_cifar.py --block basic --depth 110 --k 4 \\
        --model-parallel GPU:0,GPU:1                                  # the paper's Section V
    python experiments/multi_resnet_cifar.py --strategy mirrored     # data parallel, all GPUs
    python experiments/multi_resnet_cifar.py --quick                  # CPU demo, generated data

``--quick`` (unless --depth/--k/--block are given): multi-resnet 8, k=4 (basic) at width 0.25,
3 epochs of 4 batches with the lr steps at epochs 2 and 3, on a generated 10-class CIFAR.
"""

from tinynet.evaluation.reports import figure, paper_record
from tinynet.experiment import (OneLineParser, QuickPreset, add_common_arguments,
                                program_name, positive_int, resolve_quick, run_experiment, set_up)
from tinynet.papers.differences import differences
from tinynet.training.lr import StepDecay
from tinynet.training.conventions import ORIGINAL_RULES, add_keras_semantics_flag, batch_norm
from tinynet.training.protocol import Protocol, Stage

EXPERIMENT = "multi_resnet_cifar"
TITLE = "Multi-ResNet on CIFAR-10/100 (seed 003)"
PROTOCOL_PREFIX = "multi_resnet"  # every protocol this module makes is named so
MODEL = "multi_resnet"
EPOCHS = 164  # the code's; the paper says 200
BATCH, EVAL_BATCH = 128, 128
MILESTONES = (80, 121)  # 0-based stage epochs: epochs 81 and 122 train at x0.1 and x0.01
OPTIMIZER = {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True,
             "weight_decay": 1e-4, "weight_decay_mode": "coupled", "convention": "torch"}
STATISTICS = {  # the code's datasets/cifar10.lua and cifar100.lua, 0-255 scale
    "cifar10": ((125.3, 123.0, 113.9), (63.0, 62.1, 66.7)),
    "cifar100": ((129.3, 124.1, 112.4), (68.2, 65.4, 70.4)),
}
# (block, depth, k) -> {dataset: published test error}
PUBLISHED = {
    ("basic", 110, 1): {"cifar10": 0.0637},  # Table I (Table II's median: 6.02)
    ("basic", 8, 23): {"cifar10": 0.0737},
    ("basic", 14, 10): {"cifar10": 0.0642},
    ("basic", 68, 1): {"cifar10": 0.0627},  # Table II medians
    ("basic", 8, 4): {"cifar10": 0.0928},
    ("basic", 20, 4): {"cifar10": 0.0631},
    ("bottleneck", 200, 5): {"cifar10": 0.0435, "cifar100": 0.2042},
    ("bottleneck", 398, 5): {"cifar10": 0.0392, "cifar100": 0.2059},
    ("bottleneck", 1001, 1): {"cifar10": 0.0462, "cifar100": 0.2271},
}
TABLES = {("basic", 110, 1): "Table I", ("basic", 8, 23): "Table I", ("basic", 14, 10): "Table I",
          ("basic", 68, 1): "Table II, median of 5 runs",
          ("basic", 8, 4): "Table II, median of 5 runs",
          ("basic", 20, 4): "Table II, median of 5 runs"}
CITATION = ('Abdi & Nahavandi 2016, "Multi-Residual Networks", arXiv:1609.05672 (seed 003; code '
            'masoudabd/multi-resnet)')


def published_figure(block, depth, k, dataset):
    """The paper's figure for a configuration (PUBLISHED) as a report figure, or None."""
    value = PUBLISHED.get((block, depth, k), {}).get(dataset)
    if value is None:
        return None
    name = "pre-resnet" if k == 1 else "multi-resnet"
    table = TABLES.get((block, depth, k), "Table III")
    return figure(f"{name} {depth}, k={k} ({block}), {dataset.upper().replace('CIFAR', 'CIFAR-')}: "
                  f"test error, best over epochs ({table})", "test_error", value, at="best")


FIGURES = [published_figure(*key, dataset) for key, by_dataset in PUBLISHED.items()
           for dataset in by_dataset]
DEFAULT_MODEL = {"block": "bottleneck", "depth": 200, "k": 5}
QUICK_MODEL = {"block": "basic", "depth": 8, "k": 4}
# 8 steps per epoch (about two passes over the 600 generated images): with 4, the 4 steps at lr
# 0.1 before the scaled lr steps left validation near chance (0.2 on 10 classes); 8 reach 0.5
QUICK = QuickPreset(width=0.25, steps_per_epoch=8, epochs_scale=3 / EPOCHS,
                    synthetic=dict(num_classes=10, train_per_class=60, test_per_class=20))


def protocol(dataset="cifar10", epochs=EPOCHS):
    """The code's protocol on ``dataset`` (cifar10 or cifar100, or their generated twins)."""
    mean, std = STATISTICS["cifar100" if dataset.endswith("cifar100") else "cifar10"]
    return Protocol(
        name=f"multi_resnet_{dataset.replace('synthetic-', '')}_{epochs}",
        optimizer=OPTIMIZER, val_resolution=32, eval_batch_size=EVAL_BATCH,
        normalize={"mean": [m / 255 for m in mean], "std": [s / 255 for s in std]},
        stages=(Stage("train", resolution=32, batch_size=BATCH, epochs=epochs,
                      augment="cifar_crop_flip_mean_border",
                      lr=StepDecay(lr=OPTIMIZER["learning_rate"],
                                   milestones=tuple(m for m in MILESTONES if m < epochs),
                                   gamma=0.1)),))


def test_errors(run_dir, published=None, differences=(), log=print):
    """``test_errors.json``: the original's best-over-epochs test error (when the test set is
    the validation set), the final epoch's, and the best-validation model's otherwise, beside
    the paper's figure for the configuration; ``differences`` lists what keeps this run from
    being the paper's (generated data, a width multiplier, ...)."""
    from tinynet import io as tio
    from tinynet.run_reader import RunReader

    rd = RunReader(run_dir)
    on_test = not rd.read_config()["dataset_spec"]["args"].get("val_split")
    result = {"test_is_validation": on_test, "published": published,
              "differs_from_paper": list(differences)}
    if on_test:  # the history's validation columns are the test set's
        accuracy = rd.read_history()["val_accuracy"]
        result["best_over_epochs_test_error"] = float(1 - accuracy.max())
        result["best_epoch"] = int(accuracy.idxmax()) + 1
        result["final_epoch_test_error"] = float(1 - accuracy.iloc[-1])
    else:
        from tinynet.evaluation import load_run
        for key, which in (("final_epoch_test_error", "final"),
                           ("best_validation_model_test_error", "best")):
            result[key] = 1 - load_run(run_dir, which).evaluate("test")["top1_accuracy"]
    tio.write_result_json(tio.join(run_dir, "test_errors.json"), result, log)
    parts = [f"{key.replace('_', ' ')} {value:.2%}" for key, value in result.items()
             if key.endswith("test_error")]
    if published:
        parts.append(f"published {published:.2%}" + (
            f" (not comparable: {', '.join(differences)})" if differences else ""))
    log("test: " + ", ".join(parts))
    return result


def paper(args):
    """The paper's figure for this run's configuration (``PUBLISHED``), if it has one
    (``tinynet.evaluation.reports.paper_record``)."""
    found = published_figure(args.block, args.depth, args.k, args.dataset.replace("synthetic-", ""))
    return paper_record(CITATION, [dict(found, comparable=True)] if found else [],
                        differences(EXPERIMENT, args))


# what tinynet.papers.differences reads: the paper publishes a figure per configuration and
# dataset; an unset shortcut is the code's (A for the basic family, the projection otherwise)
FIGURE_OPTIONS = ("block", "depth", "k")
DATASETS = tuple(STATISTICS)
PAPER_VALUES = {"shortcut": lambda args: "A" if args.block == "basic" else "B",
                "val_split": lambda args: 0}  # (the test set validates, as in the code)
NOTES = {"shortcut": "the code's CIFAR default",
         "val_split": "the paper selects its figure on the test set",
         "epochs": "164 is the code's; the paper's text says 200"}


def build_parser():
    parser = OneLineParser(prog=program_name(EXPERIMENT), description=__doc__.split("\n\n")[0])
    parser.add_argument("--block", choices=["basic", "bottleneck"], default=None,
                        help="basic (depth 6n+2) or bottleneck (9n+2) blocks (default "
                             f"{DEFAULT_MODEL['block']})")
    parser.add_argument("--depth", type=positive_int, default=None,
                        help=f"network depth (default {DEFAULT_MODEL['depth']})")
    parser.add_argument("--k", type=positive_int, default=None,
                        help=f"residual functions per block (default {DEFAULT_MODEL['k']}; 1 is "
                             f"the pre-activation ResNet)")
    parser.add_argument("--shortcut", choices=["A", "B"], default=None,
                        help="basic family: A (parameter-free, the code's CIFAR default) or B "
                             "(1x1 conv where the channels change)")
    parser.add_argument("--epochs", type=positive_int, default=EPOCHS,
                        help=f"epochs ({EPOCHS} as the code; the paper says 200); the lr steps "
                             f"stay at epochs 81 and 122")
    add_keras_semantics_flag(parser, ORIGINAL_RULES[EXPERIMENT])
    add_common_arguments(parser, EXPERIMENT, QUICK, dataset="cifar10")
    return parser


def resolve(args):
    """The parsed flags with what they leave unset filled in: --quick's preset and
    --block/--depth/--k (no side effect, no check)."""
    args = resolve_quick(args, EXPERIMENT, QUICK)
    defaults = QUICK_MODEL if args.quick and not (args.block or args.depth or args.k) else (
        DEFAULT_MODEL)
    args.block, args.depth, args.k = (args.block or defaults["block"],
                                      args.depth or defaults["depth"], args.k or defaults["k"])
    return args


def parse_args(argv=None):
    """The flags, resolved (``resolve``) and checked."""
    parser = build_parser()
    args = resolve(parser.parse_args(argv))
    if not args.dataset.endswith(("cifar10", "cifar100")):
        parser.error(f"Multi-ResNet trains on CIFAR-10 or -100, not {args.dataset!r}")
    if args.block == "bottleneck" and args.shortcut == "A":
        parser.error("--shortcut A does not go with --block bottleneck: that family always "
                     "projects with a 1x1 convolution at stage starts (multi-resnet.lua has no "
                     "type A shortcut); drop --shortcut, or pass --shortcut B")
    return args


def main(argv=None):
    args = set_up(parse_args(argv))
    block, depth, k = args.block, args.depth, args.k
    model_kwargs = {"block": block, "depth": depth, "k": k}
    if args.shortcut:
        model_kwargs["shortcut"] = args.shortcut
    from tinynet.models.multi_resnet import check_configuration
    check_configuration(**model_kwargs)  # before any data is downloaded
    model_kwargs["batch_norm"] = batch_norm(args)
    dataset = args.dataset.replace("synthetic-", "")
    published = PUBLISHED.get((block, depth, k), {}).get(dataset)
    record = paper(args)  # its differences are test_errors.json's too: one list
    run_experiment(args, protocol(args.dataset, args.epochs), MODEL, model_kwargs, paper=record)
    test_errors(args.run_dir, published, record["differences"],
                lambda line: print(line, flush=True))

