"""DenseNet Model 1 on Tiny ImageNet with progressive resizing (Abai & Rajmalwar 2019).

Paper: "DenseNet Models for Tiny ImageNet Classification", arXiv:1904.10429; reproduced in seed
002 (Chang, Wang & Cao). Published: 59.5% top-1 validation accuracy, 67% training accuracy,
about 26 hours on a Colab K80 (seed 002 reached 55% with every stage halved). Figures 3 and 4
of seed 002 are the training curves this run's plots/training_curves.png compares with.

Protocol (the original notebook; docs/protocols.md, section DenseNet Model 1 and Model 2). An
epoch is 200 batches of a stream over the training set, not a pass; Adam with Keras defaults (lr
1e-3); validation at 64 px on the whole validation set after every epoch; weights, optimizer
state and learning rate carry from stage to stage. ReduceLROnPlateau(monitor val_loss -- Keras'
default, which the notebook kept -- factor sqrt(0.1), patience 5, min_lr 0.5e-6) runs where the
notebook used it:

    stage  px  batch  epochs  ReduceLROnPlateau         augmentation
    1      32  256    15      all 15                    -
    2      64   64    30      first 15, then off        -
    3      16  256    10      -                         -
    4      64   64    15      -                         -
    5      64   64   175      last 70 (after 105 off)   densenet_model1 (imgaug SomeOf)

245 epochs in all (the paper's text says 150 augmented epochs; the code ran 175). The original's
"last 10 epochs keep the best val_accuracy checkpoint" is covered by best_model.keras, which
every run keeps.

``--stages 64`` is the ablation without progressive resizing: the same stages, epochs,
learning-rate policy and augmentation, but every stage at 64 px with batch 64.

    python experiments/densenet_model1.py --stages progressive          # the paper
    python experiments/densenet_model1.py --stages progressive --quick  # CPU demo, synthetic data
"""
import argparse
import dataclasses
import math

from tinynet.evaluation.reports import figure, paper_record
from tinynet.experiment import (OneLineParser, QuickPreset, add_common_arguments,
                                program_name, resolve_quick, run_experiment, set_up)
from tinynet.papers.differences import differences
from tinynet.training.lr import Plateau
from tinynet.training.protocol import Protocol, Stage

EXPERIMENT = "densenet_model1"
TITLE = "DenseNet Model 1 on Tiny ImageNet with progressive resizing (seed 002)"
PROTOCOL_PREFIX = "densenet_model1"  # every protocol this module makes is named so
MODEL = "densenet_model1"
STEPS = 200
PLATEAU = dict(factor=math.sqrt(0.1), patience=5, min_lr=0.5e-6, monitor="val_loss")
# --quick trains 168 steps: at Keras' BatchNormalization momentum 0.99 the moving statistics
# would still hold 0.99 ** 168 = 18% of their initial variance 1 (about 4x the real one) and
# the demo validate near chance while training accuracy is 0.9; 0.9 follows the last ~10 steps.
QUICK = QuickPreset(model_kwargs=dict(bn_momentum=0.9))

PROGRESSIVE = Protocol(
    name="densenet_model1_progressive",
    optimizer={"name": "adam", "learning_rate": 1e-3},
    val_resolution=64,
    stages=(
        Stage("32px", resolution=32, batch_size=256, epochs=15, steps_per_epoch=STEPS,
              lr=Plateau(**PLATEAU)),
        Stage("64px", resolution=64, batch_size=64, epochs=30, steps_per_epoch=STEPS,
              lr=Plateau(**PLATEAU, first_epoch=0, last_epoch=15)),
        Stage("16px", resolution=16, batch_size=256, epochs=10, steps_per_epoch=STEPS),
        Stage("64px-again", resolution=64, batch_size=64, epochs=15, steps_per_epoch=STEPS),
        Stage("64px-augmented", resolution=64, batch_size=64, epochs=175, steps_per_epoch=STEPS,
              augment="densenet_model1", lr=Plateau(**PLATEAU, first_epoch=105)),
    ),
)

FIXED_64 = dataclasses.replace(
    PROGRESSIVE, name="densenet_model1_64px",
    stages=tuple(dataclasses.replace(s, resolution=64, batch_size=64) for s in PROGRESSIVE.stages))

PROTOCOLS = {"progressive": PROGRESSIVE, "64": FIXED_64}

CITATION = ('Abai & Rajmalwar 2019, "DenseNet Models for Tiny ImageNet Classification", '
            'arXiv:1904.10429, Model 1 (reproduced in seed 002)')
FIGURES = [  # the progressive protocol, about 26 hours on a Colab K80
    figure("Model 1, progressive resizing: top-1 validation accuracy", "val_accuracy", 0.595,
           at="best"),
    figure("Model 1, progressive resizing: training accuracy", "train_accuracy", 0.67,
           at="final"),
]


NOTES = {"stages": "64 trains every stage at 64 px: no progressive resizing"}  # differences


def paper(args):
    """The paper's figures beside this run (``tinynet.evaluation.reports.paper_record``)."""
    return paper_record(CITATION, [dict(f, comparable=True) for f in FIGURES],
                        differences(EXPERIMENT, args))


def build_parser():
    parser = OneLineParser(prog=program_name(EXPERIMENT), description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", choices=sorted(PROTOCOLS), default="progressive",
                        help="progressive: the paper's five stages; 64: all at 64 px (ablation)")
    add_common_arguments(parser, EXPERIMENT, QUICK)
    return parser


def resolve(args):
    """The parsed flags with what they leave unset filled in (no side effect, no check)."""
    return resolve_quick(args, EXPERIMENT, QUICK)


def parse_args(argv=None):
    return resolve(build_parser().parse_args(argv))


def main(argv=None):
    args = set_up(parse_args(argv))
    run_experiment(args, PROTOCOLS[args.stages], MODEL,
                   model_kwargs=QUICK.model_kwargs if args.quick else None, paper=paper(args))

