"""DenResNet (seed 000: V. Cheung, "DenResNet: Ensembling Dense Networks and Residual Networks",
CS231n 2017): ImageNet-pretrained backbones fine-tuned on Tiny ImageNet, one per command; their
softmax ensemble is ``tools/ensemble.py`` over the run directories.

Published (Tiny ImageNet, top-1 error): ensemble of ResNet101 + ResNet152 + DenseNet121,
softmax averaged with equal weights: 0.200 validation, 25.6% test (first on the class
leaderboard, June 2017); ResNet18 alone "about 0.65" validation error "with limited training
time". No per-model table, no public code.

Protocol, as the paper states it (PyTorch model-zoo weights; one K80):
    backbones  ResNet18/34/50/101/152, DenseNet121: torchvision's, built exactly by tinynet
               (tinynet.models.transfer with source="torchvision": build_resnet(padding=
               "torch") and tinynet.models.torchvision_densenet) with PyTorch's BatchNorm,
               each with a new head: global average pooling, optional dropout, dense to 200
               classes; ``--backbone-source keras``: keras.applications' ResNet50/101/152
               (Caffe-style: stride in the first 1x1 conv), their V2 family and DenseNet121,
               which are not the paper's networks
    batch      ResNet18 128; ResNet34, ResNet50 64; ResNet101, ResNet152, DenseNet121 24
    epochs     ResNet18 50, the others 10 (the V2 family: as its V1 namesake, our choice)
    optimizer  SGD, momentum 0.9, weight decay 1e-4 coupled (PyTorch's: added to the gradient
               of every trained parameter), updating as torch.optim.SGD does (an lr-free
               momentum buffer: the steps after a plateau's drop move with the new lr;
               ``--keras-semantics``: Keras' SGD, tinynet.training.conventions)
    lr         0.01, divided by 10 "every time error plateaus": our reading is Keras'
               ReduceLROnPlateau on the validation accuracy, factor 0.1, patience
               ``--plateau-patience`` epochs (default 2), down to 1e-5 at most three times
    input      random horizontal flips; ImageNet mean/std normalisation (each family's own
               ``preprocess_input``, inside the model); images "scaled up" before training,
               validation and testing to a size the paper does not state: ``--image-size``,
               224 by default (the backbones' ImageNet size), resized inside the model so it
               runs on the accelerator and the decoded 64 px set stays small
Options (not the paper's): ``--two-phase`` -- the head alone with the backbone frozen (its
BatchNorm in inference mode) for ``--head-fraction`` of the epochs at lr 0.01, then the whole
network with a new optimizer at lr 0.001 and the plateau rule (the standard fine-tuning recipe
seed 001 names); ``--ten-crop`` -- also evaluate with 10-crop testing ((4 corners + centre) x
flip), which the paper describes for He et al.'s ImageNet result, not as its own step.

Epochs of the deep backbones take hours (over 120 min on the paper's K80), so this experiment
checkpoints every 10 minutes inside an epoch by default (``--checkpoint-every``), and SIGTERM
(a preemptible VM's notice) saves at the next step and exits 143.

Written to the run directory besides the usual files: ``evaluation.json`` -- the best model's
validation top-1/top-5 (and 10-crop with ``--ten-crop``).

    python experiments/denresnet.py --backbone resnet101          # needs ImageNet weights
    python experiments/denresnet.py --backbone densenet121 --two-phase
    python experiments/denresnet.py --backbone resnet50 --weights ~/resnet50_notop.h5
    python experiments/denresnet.py --quick    # CPU demo: ResNet18, random init, generated data
    python tools/ensemble.py runs/denresnet-resnet101 runs/denresnet-resnet152 \\
        runs/denresnet-densenet121 --submission submission.txt

ImageNet weights (``--weights imagenet``, the default): for torchvision backbones,
torchvision's IMAGENET1K_V1 downloaded once with torch and converted to a .npz cached under
``$KERAS_HOME/models`` (``tinynet.models.torchvision_weights``; torch is needed only for that
first conversion); for keras.applications backbones, Keras' own download and cache. Offline,
the error names the file to put there. ``--weights PATH`` loads a torchvision state dict
(.pth), its converted .npz or a Keras weights file; ``--weights none`` trains from scratch.
"""
import argparse
import os

from tinynet.experiment import (OneLineParser, QuickPreset, add_common_arguments,
                                non_negative_int, number_in, positive_float, positive_int,
                                program_name,
                                resolve_quick, run_experiment, set_up)
from tinynet.errors import TinynetError
from tinynet.evaluation.reports import figure
from tinynet.training.conventions import ORIGINAL_RULES, add_keras_semantics_flag, batch_norm
from tinynet.training.lr import Constant, Plateau
from tinynet.training.protocol import Protocol, Stage

EXPERIMENT = "denresnet"
TITLE = "DenResNet: ImageNet-pretrained backbones fine-tuned on Tiny ImageNet (seed 000)"
PROTOCOL_PREFIX = "denresnet"  # every protocol this module makes is named so
# backbone -> (batch size, epochs): the paper's section 3.3; the V2 family as its V1 namesake
SCHEDULE = {
    "resnet18": (128, 50), "resnet34": (64, 10), "resnet50": (64, 10),
    "resnet101": (24, 10), "resnet152": (24, 10), "densenet121": (24, 10),
    "resnet50v2": (64, 10), "resnet101v2": (24, 10), "resnet152v2": (24, 10),
}
LR, FINE_TUNE_LR, MIN_LR = 0.01, 0.001, 1e-5
OPTIMIZER = {"name": "sgd", "learning_rate": LR, "momentum": 0.9,
             "weight_decay": 1e-4, "weight_decay_mode": "coupled", "convention": "torch"}
# The authors tuned their hyperparameters by Bayesian optimisation without stating the space:
# tools/tune.py's default experiment, with the head/whole split of --two-phase searchable.
SEARCH = {"default": True, "head_fraction": ("--two-phase", "--head-fraction")}
# the backbones torchvision has (tinynet.models.transfer.TORCHVISION_BACKBONES; kept here so that
# this module stays importable without Keras, and tests/test_denresnet_experiment.py compares)
TORCHVISION_BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                         "densenet121")
NO_KERAS_WEIGHTS = ("resnet18", "resnet34")  # tinynet's own backbones (tinynet.models.transfer)
CITATION = "Cheung 2017, DenResNet (seed 000), section 5"
ENSEMBLE_FIGURES = [
    figure("ensemble ResNet101 + ResNet152 + DenseNet121, validation top-1 error", "val_error",
           0.200, note="an ensemble: compare tools/ensemble.py over the three runs"),
    figure("ensemble, test top-1 error (challenge server)", "test_error", 0.256,
           note="the locked test set: submit tools/ensemble.py --submission")]
RESNET18_FIGURE = figure("ResNet18 alone, validation top-1 error (about, 'limited training "
                         "time')", "val_error", 0.65)
FIGURES = ENSEMBLE_FIGURES + [RESNET18_FIGURE]
# CPU demo: ResNet18 from scratch at 32 px, 4 epochs of 10 batches of 32. From scratch it needs a
# few dozen steps before validation leaves chance (2 epochs of 3 steps stay at 0.05 on 20
# classes; these reach about 0.7)
QUICK = QuickPreset(width=1.0, steps_per_epoch=10, epochs_scale=4 / 50)
# --image-size: keras.applications' smallest input (tinynet.models.transfer.MIN_IMAGE_SIZE,
# not imported here: that imports Keras before --backend is chosen) up to 4.6x ImageNet's 224,
# past which a batch's activations exceed any GPU's memory and the run would die in its first
# step with an out-of-memory traceback
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 1024
QUICK_MODEL = {"backbone": "resnet18", "image_size": 32, "weights": "none", "batch_size": 32}


def protocol(backbone, plateau_patience=2, two_phase=False, head_fraction=0.2, batch_size=None):
    """The fine-tuning protocol of ``backbone`` (one stage; two with ``two_phase``)."""
    batch, epochs = SCHEDULE[backbone]
    batch = batch_size or batch
    plateau = Plateau(factor=0.1, patience=plateau_patience, min_lr=MIN_LR,
                      monitor="val_accuracy")
    common = dict(resolution=64, batch_size=batch, augment="flip")
    if not two_phase:
        stages = (Stage("fine_tune", epochs=epochs, lr=plateau, **common),)
    else:
        head = min(epochs - 1, max(1, round(epochs * head_fraction)))
        if epochs < 2:
            raise TinynetError(f"--two-phase needs at least 2 epochs, {backbone} has {epochs}")
        stages = (Stage("head", epochs=head, lr=Constant(), freeze=("backbone",), **common),
                  Stage("all", epochs=epochs - head, lr=plateau,
                        optimizer=dict(OPTIMIZER, learning_rate=FINE_TUNE_LR), **common))
    return Protocol(name=f"denresnet_{backbone}" + ("_two_phase" if two_phase else ""),
                    optimizer=OPTIMIZER, val_resolution=64, eval_batch_size=batch,
                    normalize=None, stages=stages)


def paper(args, backbone):
    """The figures the paper reports that a run of ``backbone`` can stand beside."""
    from tinynet.evaluation.reports import paper_record
    from tinynet.papers.differences import differences

    figures = [dict(f) for f in ENSEMBLE_FIGURES]
    found = differences(EXPERIMENT, args)
    if backbone == "resnet18":
        figures.append(dict(RESNET18_FIGURE, comparable=not found))
    return paper_record(CITATION, figures, found)


# what tinynet.papers.differences reads: the paper reports each backbone; 10-crop is an
# evaluation after training; an unset batch is the backbone's own
FIGURE_OPTIONS = ("backbone",)
RUN_OPTIONS = ("ten_crop", "crop_size")
PAPER_VALUES = {"batch_size": lambda args: SCHEDULE[args.backbone][0]}
NOTES = {"image_size": "an assumption: the paper gives no size",
         "backbone_source": "the paper fine-tuned torchvision's model-zoo backbones"}


def evaluate(run_dir, ten_crop, crop_size, log=print):
    """``evaluation.json``: the best model's validation top-1/top-5, and 10-crop's."""
    from tinynet import io as tio
    from tinynet.evaluation import load_run

    run = load_run(run_dir, "best")
    result = {"model": "best", "val": run.evaluate("val")}
    if ten_crop:
        result["val_ten_crop"] = run.evaluate("val", ten_crop=True, crop_size=crop_size)
        result["crop_size"] = crop_size
    tio.write_result_json(tio.join(run_dir, "evaluation.json"), result, log)
    for key in ("val", "val_ten_crop"):
        if key in result:
            r = result[key]
            log(f"{key.replace('_', ' ')}: top-1 {r['top1_accuracy']:.4f} (error "
                f"{r['top1_error']:.4f}), top-5 {r['top5_accuracy']:.4f}")
    return result


def build_parser():
    parser = OneLineParser(prog=program_name(EXPERIMENT), description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", choices=sorted(SCHEDULE), default=None,
                        help="default resnet101 (resnet18 with --quick)")
    parser.add_argument("--weights", default=None,
                        help="imagenet (default: the backbone source's ImageNet weights, "
                             "downloaded once and cached; torchvision's are converted with "
                             "torch), torchvision (the same), none (random), or a local file: "
                             "a torchvision state dict (.pth, or the converted .npz) or a Keras "
                             "weights file")
    parser.add_argument("--backbone-source", choices=["torchvision", "keras"], default=None,
                        help="torchvision (default where torchvision has the backbone: the "
                             "paper's model-zoo networks, built exactly) or keras "
                             "(keras.applications' ResNet v1/v2 and DenseNet121: not the "
                             "paper's)")
    parser.add_argument("--image-size", type=number_in(
                            "an image size in pixels", MIN_IMAGE_SIZE, MAX_IMAGE_SIZE,
                            integer=True, accepted=f"{MIN_IMAGE_SIZE} (keras.applications' "
                            f"smallest input) to {MAX_IMAGE_SIZE}; the ImageNet backbones were "
                            f"trained at 224"), default=None,
                        help="the size images are scaled up to inside the model (default 224; "
                             f"the paper does not say; {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE})")
    parser.add_argument("--dropout", type=float, default=0.0,
                        help="dropout before the new head (default 0: the paper names none)")
    parser.add_argument("--plateau-patience", type=non_negative_int, default=2,
                        help="epochs without a better validation accuracy before lr / 10")
    parser.add_argument("--two-phase", action="store_true",
                        help="train the head alone first (backbone frozen), then everything")
    parser.add_argument("--head-fraction", type=positive_float, default=None,
                        help="--two-phase: the share of the epochs that trains the head alone "
                             "(default 0.2, at least one epoch each); implies --two-phase")
    parser.add_argument("--ten-crop", action="store_true",
                        help="also evaluate the best model with 10-crop testing")
    parser.add_argument("--crop-size", type=positive_int, default=56,
                        help="10-crop: the crop size on the 64 px images (default 56)")
    add_keras_semantics_flag(parser, ORIGINAL_RULES[EXPERIMENT])
    add_common_arguments(parser, EXPERIMENT, QUICK)
    parser.set_defaults(checkpoint_every=("seconds", 600.0))
    return parser


def resolve(args):
    """The parsed flags with what they leave unset filled in: --quick's preset, the backbone,
    weights and image size (no side effect, no check)."""
    backbone = args.backbone = args.backbone or ("resnet18" if args.quick else "resnet101")
    args = resolve_quick(args, f"{EXPERIMENT}-{backbone}", QUICK)  # runs/denresnet-<backbone>
    if args.quick:
        for key, value in QUICK_MODEL.items():
            if getattr(args, key, None) is None:
                setattr(args, key, value)
    args.weights = args.weights or "imagenet"
    args.image_size = args.image_size or 224
    args.backbone_source = args.backbone_source or (
        "torchvision" if backbone in TORCHVISION_BACKBONES else "keras")
    if args.head_fraction is not None:
        args.two_phase = True
    return args


def parse_args(argv=None):
    """The flags, resolved (``resolve``) and checked: a weights file that does not exist and
    ImageNet weights Keras does not have refused before anything is loaded."""
    parser = build_parser()
    args = resolve(parser.parse_args(argv))
    backbone = args.backbone
    if args.head_fraction is not None and not args.head_fraction < 1:
        parser.error(f"--head-fraction must be in (0, 1), got {args.head_fraction}")
    if not 0 <= args.dropout < 1:
        parser.error(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.crop_size > 64:
        parser.error(f"--crop-size must be at most the 64 px image size, got {args.crop_size}")
    weights = None if args.weights.lower() == "none" else args.weights
    named = (None, "imagenet", "torchvision")
    if weights not in named and not os.path.isfile(weights):
        what = "a folder, not a file" if os.path.isdir(weights) else "no such file"
        raise TinynetError(f"--weights {weights}: {what}; pass imagenet, torchvision, none or "
                           f"the path of a weights file (.pth, .npz or a Keras file)")
    source = args.backbone_source
    if source == "torchvision" and backbone not in TORCHVISION_BACKBONES:
        raise TinynetError(f"torchvision has no {backbone}; pass --backbone-source keras")
    if source == "keras" and backbone in NO_KERAS_WEIGHTS:
        raise TinynetError(f"keras.applications has no {backbone}; pass --backbone-source "
                           f"torchvision")
    if weights == "torchvision" and source != "torchvision":
        raise TinynetError("--weights torchvision are torchvision's backbones' weights; pass "
                           "--backbone-source torchvision")
    return args


def _check_torchvision_weights_reachable(backbone):
    """torchvision's ImageNet weights come from the converted cache, or from PyTorch's file
    through torch: without either, refused before any data is loaded (the model's builder
    would say the same after). The cache path as tinynet.models.torchvision_weights
    .cached_imagenet_path computes it, without importing Keras before --backend is set."""
    import importlib.util

    home = os.path.expanduser(os.environ.get("KERAS_HOME") or os.path.join("~", ".keras"))
    cache = os.path.join(home, "models", f"torchvision_{backbone}_imagenet1k_v1.npz")
    if os.path.exists(cache) or importlib.util.find_spec("torch") is not None:
        return
    raise TinynetError(
        f"torchvision's ImageNet weights of {backbone} are converted once from PyTorch's file, "
        f"which needs torch: pip install torch (the CPU build is enough), or put the file "
        f"converted elsewhere (python -m tinynet.models.torchvision_weights {backbone} "
        f"<file.pth> <out.npz>) at {cache}, or pass --weights <that .npz or the .pth>")


def main(argv=None):
    args = parse_args(argv)
    if args.weights.lower() in ("imagenet", "torchvision") and (
            args.backbone_source == "torchvision"):
        _check_torchvision_weights_reachable(args.backbone)
    args = set_up(args)
    backbone = args.backbone
    weights = None if args.weights.lower() == "none" else args.weights
    model_kwargs = {"image_size": args.image_size, "weights": weights,
                    "source": args.backbone_source}
    if args.backbone_source == "torchvision":
        model_kwargs["batch_norm"] = batch_norm(args)
    if args.dropout:
        model_kwargs["dropout"] = args.dropout
    run_experiment(args, protocol(backbone, args.plateau_patience, args.two_phase,
                                  args.head_fraction or 0.2, getattr(args, "batch_size", None)),
                   f"transfer_{backbone}", model_kwargs, paper=paper(args, backbone))
    evaluate(args.run_dir, args.ten_crop, args.crop_size, lambda line: print(line, flush=True))

