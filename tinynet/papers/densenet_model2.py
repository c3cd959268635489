"""DenseNet Model 2 on Tiny ImageNet: six phases of cyclical learning rates (Abai & Rajmalwar 2019).

Paper: "DenseNet Models for Tiny ImageNet Classification", arXiv:1904.10429; reproduced in seed
002. Published: 62.73% top-1 validation accuracy (68.11% training) after 108 epochs, about 36
hours on Colab; seed 002 reached 45% with shortened schedules.

Protocol (the original Keras code; docs/protocols.md, section DenseNet Model 1 and Model 2):
batch 128 at 64 px; an epoch is ``steps_per_epoch = num_train // 128`` batches (781 on the real
set, derived from the data); RMSprop(lr 1e-4, epsilon 1e-8) -- the paper's text says
Adam(1e-4): ``--optimizer adam``; L2 2e-4 and VarianceScaling in the model; the Model 2
imgaug recipe on every training batch; CyclicLR ``triangular2`` in every phase; each phase
after the first starts from the best-val_accuracy weights of the phase before (the optimizer
state carries on):

    phase  epochs  base_lr  max_lr  step size (iterations, real set)
    1      24      1e-4     6e-4    4686 = 6 epochs
    2      24      1e-5     6e-5    4686 = 6 epochs
    3      24      1e-5     6e-5    3128 ~ 4 epochs (3124 here)
    4      12      1e-6     6e-6    1564 ~ 2 epochs (1562 here)
    5      12      1e-5     6e-5    1564 ~ 2 epochs
    6      12      1e-7     6e-7    1564 ~ 2 epochs

Step sizes are stated in epochs so that they follow the data size and ``--epochs-scale``; on
the real set that gives the original's iterations exactly for phases 1-2 and 4 and 2
iterations fewer (0.1%) for phases 3-6, whose typed values assumed 782 steps per epoch.

    python experiments/densenet_model2.py                 # the paper's protocol, 108 epochs
    python experiments/densenet_model2.py --quick         # CPU demo, synthetic data
"""
import argparse

from tinynet.evaluation.reports import figure, paper_record
from tinynet.experiment import (OneLineParser, QuickPreset, add_common_arguments,
                                program_name, resolve_quick, run_experiment, set_up)
from tinynet.papers.differences import differences
from tinynet.training.lr import Cyclic
from tinynet.training.protocol import Protocol, Stage

EXPERIMENT = "densenet_model2"
TITLE = "DenseNet Model 2 on Tiny ImageNet: six cyclic-lr phases (seed 002)"
PROTOCOL_PREFIX = "densenet_model2"  # every protocol this module makes is named so
MODEL = "densenet_model2"
MODEL_KWARGS = {"bias_l2": False}  # the notebook's L2 is on kernels only (cell 16)
BATCH = 128
PHASES = [  # (epochs, base_lr, max_lr, half-cycle in epochs)
    (24, 1e-4, 6e-4, 6),
    (24, 1e-5, 6e-5, 6),
    (24, 1e-5, 6e-5, 4),
    (12, 1e-6, 6e-6, 2),
    (12, 1e-5, 6e-5, 2),
    (12, 1e-7, 6e-7, 2),
]
# --quick trains 72 steps: at Keras' BatchNormalization momentum 0.99 the moving statistics
# would still hold 0.99 ** 72 = 49% of their initial variance 1 (10-100x the real one) and the
# demo validate at chance; 0.9 follows the last ~10 steps.
QUICK = QuickPreset(model_kwargs=dict(bn_momentum=0.9))
OPTIMIZERS = {
    "rmsprop": {"name": "rmsprop", "learning_rate": 1e-4, "epsilon": 1e-8},  # the code
    "adam": {"name": "adam", "learning_rate": 1e-4},  # the paper's text
}


def protocol(optimizer="rmsprop"):
    return Protocol(
        name=f"densenet_model2_cyclic_{optimizer}",
        optimizer=OPTIMIZERS[optimizer],
        val_resolution=64,
        stages=tuple(
            Stage(f"phase{i}", resolution=64, batch_size=BATCH, epochs=epochs,
                  augment="densenet_model2", lr=Cyclic(base, top, step, "triangular2"),
                  restart_from_best=i > 1)
            for i, (epochs, base, top, step) in enumerate(PHASES, start=1)),
    )


CITATION = ('Abai & Rajmalwar 2019, "DenseNet Models for Tiny ImageNet Classification", '
            'arXiv:1904.10429, Model 2 (reproduced in seed 002)')
FIGURES = [  # 108 epochs, RMSprop as the code, about 36 hours on Colab
    figure("Model 2, six cyclic-lr phases: top-1 validation accuracy", "val_accuracy", 0.6273,
           at="best"),
    figure("Model 2, six cyclic-lr phases: training accuracy", "train_accuracy", 0.6811,
           at="final"),
]


NOTES = {"optimizer": "adam is the paper's text; the code that made the figures ran RMSprop"}


def paper(args):
    """The paper's figures beside this run (``tinynet.evaluation.reports.paper_record``)."""
    return paper_record(CITATION, [dict(f, comparable=True) for f in FIGURES],
                        differences(EXPERIMENT, args))


def build_parser():
    parser = OneLineParser(prog=program_name(EXPERIMENT), description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="rmsprop",
                        help="rmsprop (1e-4, epsilon 1e-8: the original code) or adam (1e-4: "
                             "the paper's text)")
    add_common_arguments(parser, EXPERIMENT, QUICK)
    return parser


def resolve(args):
    """The parsed flags with what they leave unset filled in (no side effect, no check)."""
    return resolve_quick(args, EXPERIMENT, QUICK)


def parse_args(argv=None):
    return resolve(build_parser().parse_args(argv))


def main(argv=None):
    args = set_up(parse_args(argv))
    model_kwargs = dict(MODEL_KWARGS, **(QUICK.model_kwargs if args.quick else {}))
    run_experiment(args, protocol(args.optimizer), MODEL, model_kwargs=model_kwargs,
                   paper=paper(args))

