"""The ResNet design space under 5M parameters on CIFAR-10 (seed 004: Singh, Kumar & Biyani,
"Mini-Project 1: Residual Network Design", NYU; code: 95anantsingh/NYU-ResNet-On-Steroids).

Published: ResNet-24 (N 4, B 3,3,2,3, C 64,128,128,256, F 3, K 1, P 4; 4,935,242 parameters)
94.84% best validation accuracy on a 45k/5k split, test 94.51% at the end of the run and 94.59%
for the best checkpoint (the paper's "test error 0.359" is the test cross-entropy), after
200 epochs plus 200 more from the first run's checkpoint. Optimizer sweep (Fig. 5a, ResNet-24,
60 epochs, best validation): Adadelta 90.32, Adam 87.42, SGD 84.90, SGD+Nesterov 84.74,
Adagrad 84.26. Table 1's nine configurations are ``--model nyu_resnet10_1`` ... ``nyu_resnet86``
(tinynet/models/cifar_resnet.py says which printed parameter counts are right).

Protocol: the code, as its README command ran it (``-e 200 -o adadelta -an -sc -mx -v``):
    data       CIFAR-10, 45,000 train / 5,000 validation (a permutation seeded 43), test 10,000
    input      random crop 32 with 4-pixel zero padding, horizontal flip, then normalisation
               with mean (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.2010)
    mixup      alpha 1, ONE lambda per batch with a permutation of the batch; training
               accuracy logged against the unmixed labels, as the code did
    optimizer  Adadelta(lr 0.1, rho 0.9, eps 1e-6), weight decay 5e-4 coupled (PyTorch's
               ``weight_decay``: added to the gradient of every parameter, BN and biases too);
               the sweep's SGD, Adagrad and Adam update as torch.optim's
    BN         PyTorch's moving variance (unbiased batch variance); ``--keras-semantics``
               trains with Keras' update rules and BN instead (tinynet.training.conventions)
    lr         the code's rule (tinynet.training.lr.NYURule): 0.1 for epochs 1-101, then ten
               times smaller after every epoch (its CosineAnnealingLR was overwritten each
               epoch); ``--schedule`` sgdr / cosine / step give the paper's text instead
    batch      128 (validation and test 256), 200 epochs of floor(45000 / 128) = 351 batches
               of a seeded stream of permutations (the original: shuffled passes with a
               partial last batch)
At the end the best-validation model is evaluated on the test set (test_metrics.json).

Choices where the code is silent or cannot be followed: the validation split uses NumPy's
permutation with seed 43, not torch's ``random_split`` (same sizes and seed, other images);
``--schedule sgdr`` uses T_0 10 epochs, T_mult 2 (SGDR's CIFAR setting), ``step`` x0.1 every
100 epochs (the paper's text). The sweep's optimizers use PyTorch's defaults with the code's
lr 0.1, except Adam at 1e-3 (docs/protocols.md, section CIFAR ResNet design space (seed 004)).

    python experiments/cifar_resnet_design.py                        # ResNet-24, 200 epochs
    python experiments/cifar_resnet_design.py --continue-epochs 200  # then 200 more
    python experiments/cifar_resnet_design.py --sweep-optimizers     # Fig. 5a, 60 epochs each
    python experiments/cifar_resnet_design.py --quick                # CPU demo, generated data
"""
import argparse
import os
import dataclasses

from tinynet.errors import TinynetError
from tinynet.evaluation.reports import figure, paper_record
from tinynet.experiment import (OneLineParser, QuickPreset, add_common_arguments,
                                load_data, positive_int, program_name, resolve_quick,
                                run_experiment, set_up)
from tinynet.papers.differences import differences
from tinynet.training.conventions import ORIGINAL_RULES, add_keras_semantics_flag, batch_norm
from tinynet.training.lr import Cosine, CosineWarmRestarts, NYURule, StepDecay
from tinynet.training.protocol import Mixup, Protocol, Stage

EXPERIMENT = "cifar_resnet_design"
TITLE = "the ResNet design space under 5M parameters on CIFAR-10 (seed 004)"
PROTOCOL_PREFIX = "nyu_cifar10"  # every protocol this module makes is named so
MODEL = "nyu_resnet24"
EPOCHS, SWEEP_EPOCHS = 200, 60
BATCH, EVAL_BATCH = 128, 256
VAL_SPLIT, SPLIT_SEED = 5000, 43
LR = 0.1
# every parameter decayed, each optimizer updating as torch.optim does
WEIGHT_DECAY = {"weight_decay": 5e-4, "weight_decay_mode": "coupled", "convention": "torch"}
OPTIMIZERS = {  # PyTorch's defaults as Keras arguments, the code's lr (Adam: docs/protocols.md)
    "adadelta": {"name": "adadelta", "learning_rate": LR, "rho": 0.9, "epsilon": 1e-6},
    "sgd": {"name": "sgd", "learning_rate": LR, "momentum": 0.9},
    "sgdn": {"name": "sgd", "learning_rate": LR, "momentum": 0.9, "nesterov": True},
    "adagrad": {"name": "adagrad", "learning_rate": LR, "initial_accumulator_value": 0.0,
                "epsilon": 1e-10},
    "adam": {"name": "adam", "learning_rate": 1e-3, "epsilon": 1e-8},
}
PUBLISHED = {"validation_accuracy": 0.9484, "test_accuracy_best_checkpoint": 0.9459,
             "test_accuracy_end": 0.9451}
PUBLISHED_SWEEP = {"adadelta": 0.9032, "adam": 0.8742, "sgd": 0.8490, "sgdn": 0.8474,
                   "adagrad": 0.8426}
CITATION = ('Singh, Kumar & Biyani, "Mini-Project 1: Residual Network Design", NYU (seed 004; '
            'code 95anantsingh/NYU-ResNet-On-Steroids)')
HEADLINE = [  # ResNet-24, Adadelta, the code's lr rule, mixup: 200 epochs, then 200 more
    figure("ResNet-24, 200 + 200 epochs: best validation accuracy (45k/5k split)",
           "val_accuracy", PUBLISHED["validation_accuracy"], at="best"),
    figure("ResNet-24, 200 + 200 epochs: test accuracy of the best checkpoint", "test_accuracy",
           PUBLISHED["test_accuracy_best_checkpoint"], at="best"),
    figure("ResNet-24, 200 + 200 epochs: test accuracy at the end of the run", "test_accuracy",
           PUBLISHED["test_accuracy_end"], at="final"),
]
SWEEP_FIGURES = {name: figure(f"ResNet-24, {name}, {SWEEP_EPOCHS} epochs: best validation "
                              f"accuracy (Fig. 5a)", "val_accuracy", value, at="best")
                 for name, value in PUBLISHED_SWEEP.items()}
FIGURES = HEADLINE + list(SWEEP_FIGURES.values())
# A CPU demo: ResNet-24 itself on 10 generated classes, 8 epochs of 4 batches (the rule's
# decay scaled to epoch 5), about 1.5 minutes on 2 cores.
QUICK = QuickPreset(width=1.0, steps_per_epoch=None, epochs_scale=0.04,
                    synthetic=dict(num_classes=10, train_per_class=60, test_per_class=20))


def schedule(name, epochs, lr):
    """The stage's lr policy for ``--schedule`` over ``epochs``."""
    if name == "code":
        return NYURule(lr=lr, first=100 * epochs // EPOCHS, second=150 * epochs // EPOCHS)
    if name == "sgdr":
        return CosineWarmRestarts(lr=lr, t_0=10, t_mult=2)
    if name == "cosine":
        return Cosine(lr=lr, t_max=epochs)
    milestones = tuple(range(100, epochs, 100)) or ((epochs // 2,) if epochs > 1 else ())
    return StepDecay(lr=lr, milestones=milestones, gamma=0.1)


def protocol(optimizer="adadelta", schedule_name="code", epochs=EPOCHS, mixup=True, name=None):
    spec = dict(OPTIMIZERS[optimizer], **WEIGHT_DECAY)
    return Protocol(
        name=name or f"nyu_cifar10_{optimizer}_{schedule_name}_{epochs}",
        optimizer=spec, val_resolution=32, eval_batch_size=EVAL_BATCH, normalize="mean_std",
        stages=(Stage("train", resolution=32, batch_size=BATCH, epochs=epochs,
                      augment="cifar_crop_flip", lr=schedule(schedule_name, epochs,
                                                             spec["learning_rate"]),
                      mixup=Mixup(alpha=1.0, per="batch") if mixup else None),))


def test_evaluation(run_dir, log=print):
    """Test-set accuracy of the best-validation model, written beside the paper's figures."""
    from tinynet import io as tio
    from tinynet.evaluation import load_run

    run = load_run(run_dir, "best")
    if run.data.test is None:
        log(f"{run.data.spec['name']} has no labelled test set: no test evaluation")
        return None
    result = {"best_checkpoint": run.evaluate("test"),
              "test_is_validation": run.data.test is run.data.val,  # --val-split 0
              "best_val_accuracy": tio.read_json(tio.join(run_dir, "state.json"))[
                  "best_val_accuracy"],
              "published": PUBLISHED}
    tio.write_result_json(tio.join(run_dir, "test_metrics.json"), result, log)
    m = result["best_checkpoint"]
    log(f"test: top-1 {m['top1_accuracy']:.4f} top-5 {m['top5_accuracy']:.4f} loss "
        f"{m['loss']:.4f} on {m['images']} images (best-validation model); published "
        f"{PUBLISHED['validation_accuracy']:.2%} validation, "
        f"{PUBLISHED['test_accuracy_best_checkpoint']:.2%} test")
    return result


def paper(args, sweep_optimizer=None):
    """The paper's figures beside this run (``tinynet.evaluation.reports.paper_record``): the
    headline run's, comparable for the continued run (``--continue-epochs 200`` after 200
    epochs), or with ``sweep_optimizer`` that optimizer's Fig. 5a figure."""
    if sweep_optimizer:
        figures = [dict(SWEEP_FIGURES[sweep_optimizer], comparable=True)]
    elif args.continue_epochs == EPOCHS:
        figures = [dict(f, comparable=True) for f in HEADLINE]
    else:
        figures = [dict(f, comparable=False, note=f"after {EPOCHS} epochs and {EPOCHS} more from "
                                                  f"their final checkpoint (--continue-epochs "
                                                  f"{EPOCHS})") for f in HEADLINE]
    # a sweep's run stands beside its optimizer's 60-epoch figure
    figure_options = FIGURE_OPTIONS + (("optimizer", "epochs") if sweep_optimizer else ())
    return paper_record(CITATION, figures, differences(EXPERIMENT, args, figure_options))


# what tinynet.papers.differences reads: the sweep has its own figures; a continuation records
# its parent and is judged by the figures' notes (above)
FIGURE_OPTIONS = ("sweep_optimizers",)
RUN_OPTIONS = ("continue_epochs", "continue_run_dir")
NOTES = {"model": "the figures are ResNet-24's",
         "schedule": "sgdr, cosine and step are the paper's text; the figures came from the "
                     "code's rule",
         "no_mixup": "the figures are with mixup"}


def sweep(args, data, model_kwargs):
    """Fig. 5a: one 60-epoch run per optimizer (run dirs RUN_DIR/<optimizer>) and a table."""
    from tinynet import io as tio
    from tinynet.evaluation.tables import markdown_table

    rows = []
    for name in OPTIMIZERS:
        run_dir = tio.join(args.run_dir, name)
        sub = argparse.Namespace(**dict(vars(args), run_dir=run_dir))
        run_experiment(sub, protocol(name, args.schedule, SWEEP_EPOCHS, mixup=not args.no_mixup,
                                     name=f"nyu_cifar10_sweep_{name}"),
                       args.model, model_kwargs, data=data, paper=paper(sub, name))
        state = tio.read_json(tio.join(run_dir, "state.json"))
        rows.append((name, f"{state['best_val_accuracy']:.4f}", f"{PUBLISHED_SWEEP[name]:.4f}",
                     state["completed_epochs"]))
    table = markdown_table(["optimizer", "best val accuracy", "paper (Fig. 5a)", "epochs"], rows)
    tio.write_text_atomic(tio.join(args.run_dir, "sweep.md"), table + "\n")
    print(table, flush=True)


def build_parser():
    parser = OneLineParser(prog=program_name(EXPERIMENT), description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=MODEL,
                        help="a Table 1 row (nyu_resnet10_1 ... nyu_resnet86; default the "
                             "paper's ResNet-24)")
    parser.add_argument("--schedule", choices=["code", "sgdr", "cosine", "step"], default="code",
                        help="code: the original's per-epoch rule (default); sgdr, cosine, step: "
                             "the paper's text")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adadelta")
    parser.add_argument("--epochs", type=positive_int, default=EPOCHS,
                        help="epochs of the run (the sweep's are 60, the paper's)")
    parser.add_argument("--no-mixup", action="store_true", help="the paper's run before mixup")
    parser.add_argument("--sweep-optimizers", action="store_true",
                        help="Fig. 5a: every optimizer for 60 epochs, RUN_DIR/<optimizer>, "
                             "and RUN_DIR/sweep.md")
    parser.add_argument("--continue-epochs", type=positive_int, default=None,
                        help="train this many more epochs from the final checkpoint of the run "
                             "in --run-dir, into --continue-run-dir (records its parent)")
    parser.add_argument("--continue-run-dir", default=None,
                        help="default: RUN_DIR-continue<N>")
    add_keras_semantics_flag(parser, ORIGINAL_RULES[EXPERIMENT])
    add_common_arguments(parser, EXPERIMENT, QUICK, dataset="cifar10")
    return parser


def resolve(args):
    """The parsed flags with what they leave unset filled in (no side effect, no check)."""
    args = resolve_quick(args, EXPERIMENT, QUICK)
    if args.dataset.endswith(("cifar10", "cifar100")):  # the code's 45k/5k split, seed 43
        if args.val_split is None:
            args.val_split = 60 if args.quick else VAL_SPLIT
        if args.split_seed is None:
            args.split_seed = SPLIT_SEED
    if args.continue_epochs and not args.continue_run_dir:
        args.continue_run_dir = f"{args.run_dir.rstrip('/')}-continue{args.continue_epochs}"
    return args


def same_folder(a, b):
    """Whether two run directory paths name one folder (local paths resolved)."""
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    return os.path.realpath(a) == os.path.realpath(b)


def parse_args(argv=None):
    parser = build_parser()
    args = resolve(parser.parse_args(argv))
    if args.sweep_optimizers and args.continue_epochs:
        parser.error("--sweep-optimizers and --continue-epochs do not go together")
    if args.continue_epochs and same_folder(args.continue_run_dir, args.run_dir):
        parser.error(f"--continue-run-dir {args.continue_run_dir} is the --run-dir itself: the "
                     f"continued run trains into a folder of its own and records "
                     f"{args.run_dir} as its parent, which stays as it is; give another "
                     f"--continue-run-dir (default: "
                     f"{args.run_dir.rstrip('/')}-continue{args.continue_epochs})")
    if args.sweep_optimizers and args.strategy == "multiworker":
        parser.error("--sweep-optimizers runs one protocol after another; under --strategy "
                     "multiworker run each optimizer as its own command (--optimizer)")
    return args


def check_model(name):
    """An unknown --model, refused before the data is loaded (after set_up: the model registry
    imports Keras, which must wait for --backend)."""
    from tinynet.models import list_models

    if name not in list_models():
        rows = [m for m in list_models() if m.startswith("nyu_resnet")]
        raise TinynetError(f"--model {name}: no such model; the Table 1 rows are "
                           f"{', '.join(rows)}")


def main(argv=None):
    args = set_up(parse_args(argv))
    check_model(args.model)
    model_kwargs = {"batch_norm": batch_norm(args)}
    data = load_data(args)
    if args.sweep_optimizers:
        sweep(args, data, model_kwargs)
        return
    init_from = None
    epochs = args.epochs
    if args.continue_epochs:  # from the run in --run-dir, in a run directory of its own
        init_from, epochs = args.run_dir, args.continue_epochs
        args = argparse.Namespace(**dict(vars(args), run_dir=args.continue_run_dir))
    p = protocol(args.optimizer, args.schedule, epochs, mixup=not args.no_mixup)
    if init_from:
        p = dataclasses.replace(p, name=p.name + "_continued")
    run_experiment(args, p, args.model, model_kwargs, data=data, init_from=init_from,
                   paper=paper(args))
    test_evaluation(args.run_dir, lambda line: print(line, flush=True))

