"""ResNets trained from scratch on Tiny ImageNet, as seed 001 (Lei Sun, "ResNet on Tiny
ImageNet", Stanford) did: vanilla, improved (stochastic depth, mean subtraction, flips) and final (heavy
imgaug augmentation), for ResNet-18/34/50/101/152 with any block variant of He et al. 2016b.

Published (seed 001, ResNet-34, full pre-activation, validation error):
    vanilla   48%    at 15k iterations (overfits after the lr annealing at 10k)
    improved  43.7%  (test 45.1%): + stochastic depth (p_L 0.5), global mean subtraction, flips
    final     34.68% after 70k iterations: + heavy augmentation (12 transforms)

Protocol: batch 100, an epoch = 1,000 iterations (seed 001), 64 px, validation at 64 px.
Where the paper is silent, chosen here and why:
- optimizer: SGD, momentum 0.9, lr 0.1 divided by 10 at the annealing points below, and
  weight decay 1e-4 on conv and dense kernels as an L2 gradient term that goes through the
  momentum (He et al.'s ResNet recipe, which seed 001 follows for the architecture; Keras'
  decoupled ``weight_decay`` would be about 10x weaker at momentum 0.9 and decay BN too).
- annealing: vanilla 10k (the paper names it) then 5k more = 15k; improved 15k + 10k + 5k
  = 30k (the regularised model trains longer before it plateaus); final 40k + 20k + 10k = 70k
  (the paper: "40,000 iterations to get to the first error rate plateau and totally 70,000").
- stem: the 3x3/1 ``tiny`` stem without max pooling. The ImageNet stem would shrink 64 px
  inputs to 16 px before the first stage and leave 2x2 maps at the last; with the tiny stem
  the last stage sees 8x8, which is what the paper's error rates need. ``--stem imagenet``
  gives the other.
- block: ``e`` (full pre-activation) and depth 34 by default, seed 001's final choice.

    python experiments/resnet_tiny_imagenet.py --depth 34 --block e --variant final
    python experiments/resnet_tiny_imagenet.py --quick
"""
import argparse

from tinynet.evaluation.reports import figure, paper_record
from tinynet.experiment import (OneLineParser, QuickPreset, add_common_arguments,
                                program_name, resolve_quick, run_experiment, set_up)
from tinynet.papers.differences import differences
from tinynet.training.lr import Constant
from tinynet.training.protocol import Protocol, Stage

EXPERIMENT = "resnet_tiny_imagenet"
TITLE = "ResNets from scratch on Tiny ImageNet (seed 001)"
PROTOCOL_PREFIX = "resnet_tiny_imagenet"  # every protocol this module makes is named so
BATCH, STEPS = 100, 1000
OPTIMIZER = {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}
WEIGHT_DECAY = 1e-4  # in the model (kernel L2), see the header
VARIANTS = {  # variant: (recipe, stochastic depth p_L, [(epochs of 1k iterations, lr), ...])
    "vanilla": (None, None, [(10, 0.1), (5, 0.01)]),
    "improved": ("resnet_basic", 0.5, [(15, 0.1), (10, 0.01), (5, 0.001)]),  # + mean subtraction
    "final": ("resnet_heavy", 0.5, [(40, 0.1), (20, 0.01), (10, 0.001)]),
}
# width 0.25 (narrower widths train too: tinynet.models.resnet fences the oneDNN crash of narrow
# projection shortcuts, docs/faults.md; 0.25 keeps the demo's runs as they were)
QUICK = QuickPreset(width=0.25, steps_per_epoch=5, epochs_scale=0.1)


def protocol(variant):
    recipe, _, schedule = VARIANTS[variant]
    return Protocol(
        name=f"resnet_tiny_imagenet_{variant}", optimizer=OPTIMIZER, val_resolution=64,
        eval_batch_size=BATCH, normalize=None if variant == "vanilla" else "mean",
        stages=tuple(Stage(f"lr{lr:g}", resolution=64, batch_size=BATCH, epochs=epochs,
                           steps_per_epoch=STEPS, augment=recipe, lr=Constant(lr))
                     for epochs, lr in schedule))


CITATION = ('Lei Sun, "ResNet on Tiny ImageNet", Stanford (seed 001): ResNet-34, full '
            'pre-activation blocks (e), batch 100, 1,000 iterations per epoch, on a K80')
VARIANT_FIGURES = {  # variant -> its published figures (ResNet-34, block e)
    "vanilla": [figure("ResNet-34 (e) vanilla: validation error at 15k iterations",
                       "val_error", 0.48, at="final")],
    "improved": [figure("ResNet-34 (e) + stochastic depth, mean subtraction, flips: "
                        "validation error", "val_error", 0.437, at="final"),
                 figure("ResNet-34 (e) + stochastic depth, mean subtraction, flips: test error",
                        "test_error", 0.451, at="final",
                        note="the test labels are not public: the challenge server's figure")],
    "final": [figure("ResNet-34 (e) + heavy augmentation: validation error after 70k "
                     "iterations", "val_error", 0.3468, at="final")],
}
FIGURES = [f for figures in VARIANT_FIGURES.values() for f in figures]


def paper(args):
    """The paper's figures beside this run (``tinynet.evaluation.reports.paper_record``): the
    three variants', comparable only for the run's own variant of ResNet-34 (e)."""
    figures = [dict(f, comparable=True) if variant == args.variant else
               dict(f, comparable=False, note=f"the {variant} variant; this run is {args.variant}")
               for variant in VARIANTS for f in VARIANT_FIGURES[variant]]
    return paper_record(CITATION, figures, differences(EXPERIMENT, args))


# what tinynet.papers.differences reads: each variant has its own figures; the BatchNorm kernel
# computes the same function either way
FIGURE_OPTIONS = ("variant",)
RUN_OPTIONS = ("batch_norm",)
NOTES = {"depth": "the figures are ResNet-34's", "block": "e is full pre-activation"}


def build_parser():
    parser = OneLineParser(prog=program_name(EXPERIMENT), description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, choices=[18, 34, 50, 101, 152], default=34)
    parser.add_argument("--block", choices=list("abcde"), default="e",
                        help="residual block variant of He et al. 2016b Fig. 4 (default e)")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="final")
    parser.add_argument("--stem", choices=["tiny", "imagenet"], default="tiny")
    parser.add_argument("--batch-norm", choices=["keras", "fused"], default=None,
                        help="fused: TensorFlow's FusedBatchNormV3 kernel (default on the "
                             "TensorFlow backend); keras: the same function in any backend "
                             "(default elsewhere)")
    add_common_arguments(parser, EXPERIMENT, QUICK)
    return parser


def resolve(args):
    """The parsed flags with what they leave unset filled in (no side effect, no check)."""
    args = resolve_quick(args, EXPERIMENT, QUICK)
    if args.batch_norm is None:
        args.batch_norm = "fused" if args.backend == "tensorflow" else "keras"
    return args


def parse_args(argv=None):
    return resolve(build_parser().parse_args(argv))


def main(argv=None):
    args = set_up(parse_args(argv))
    _, survival, _ = VARIANTS[args.variant]
    model_kwargs = {"variant": args.block, "stem": args.stem, "batch_norm": args.batch_norm,
                    "stochastic_depth": survival, "seed": args.seed,
                    "weight_decay": WEIGHT_DECAY}
    run_experiment(args, protocol(args.variant), f"resnet{args.depth}", model_kwargs,
                   paper=paper(args))

