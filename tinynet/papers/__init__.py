"""The papers tinynet reproduces, as modules of the package that anything can import.

One module per experiment (five papers; DenseNet's paper has two models):

    densenet_model1        Abai & Rajmalwar 2019, Model 1: progressive resizing (seed 002)
    densenet_model2        Abai & Rajmalwar 2019, Model 2: six cyclic-lr phases (seed 002)
    resnet_tiny_imagenet   ResNets from scratch on Tiny ImageNet (seed 001)
    cifar_resnet_design    the ResNet design space under 5M parameters on CIFAR-10 (seed 004)
    multi_resnet_cifar     Multi-ResNet on CIFAR-10/100 (seed 003)
    denresnet              DenResNet: fine-tuned backbones and their ensemble (seed 000)

Each module holds, as data: ``CITATION`` and ``FIGURES`` (the published figures, as
``tinynet.evaluation.reports.figure`` records), its protocols (``PROTOCOLS`` or a ``protocol``
function of the paper's options), ``QUICK`` (the ``--quick`` preset), ``TITLE`` (one line),
``EXPERIMENT`` (its name, also the default run directory ``runs/<EXPERIMENT>``) and
``PROTOCOL_PREFIX`` (the start of every protocol name it makes, which identifies its runs),
``SEARCH`` where the authors searched hyperparameters (``tools/tune.py``), and what
``tinynet.papers.differences`` reads to compute a run's differences from the paper
(``FIGURE_OPTIONS``, ``RUN_OPTIONS``, ``PAPER_VALUES``, ``NOTES``, ``DATASETS``); and, as code,
``build_parser`` (its options on top of the common flags of ``tinynet.experiment``),
``resolve`` (what the flags leave unset, filled in without side effects), ``parse_args``
(both, then its checks), ``paper`` (the published figures beside a run) and ``main`` (the run,
then what the paper evaluates after training). Importing one starts neither Keras nor
TensorFlow.

    from tinynet.papers import get_paper, list_papers
    get_paper("densenet_model1").PROTOCOLS["progressive"].total_epochs   # 245

The command line of a paper is ``tinynet PAPER ...`` (``python -m tinynet PAPER ...``) from an
installed package, or ``python experiments/PAPER.py ...`` in a clone: the same flags.
The protocols' facts and their sources: docs/protocols.md.
"""
import importlib

from tinynet.errors import TinynetError

PAPERS = ("densenet_model1", "densenet_model2", "resnet_tiny_imagenet", "cifar_resnet_design",
          "multi_resnet_cifar", "denresnet")


def list_papers():
    """The names of the papers' modules, in the order of the table above."""
    return list(PAPERS)


def get_paper(name):
    """The module of paper ``name`` (``tinynet.papers.<name>``); unknown names are errors."""
    if name not in PAPERS:
        raise TinynetError(f"unknown paper {name!r}; known: {', '.join(PAPERS)}")
    return importlib.import_module(f"tinynet.papers.{name}")


def summary(name):
    """A paper's one-line title (its module's ``TITLE``)."""
    return get_paper(name).TITLE


def paper_of_protocol(protocol_name):
    """The paper whose protocols are named ``protocol_name`` (its ``PROTOCOL_PREFIX``), or
    None: how a run directory that recorded no paper is matched to one."""
    for name in PAPERS:
        if str(protocol_name or "").startswith(get_paper(name).PROTOCOL_PREFIX):
            return name
    return None
