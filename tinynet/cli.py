"""``tinynet PAPER [flags]`` (or ``python -m tinynet PAPER [flags]``): a paper's run from an
installed package, no clone needed; the flags are those of ``python experiments/PAPER.py``.

    tinynet --list                                  # the papers
    tinynet densenet_model1 --stages progressive --quick
    tinynet multi_resnet_cifar --help
"""
import sys

from tinynet.experiment import run_cli
from tinynet.papers import get_paper, list_papers, summary

USAGE = "usage: tinynet PAPER [flags]  (tinynet PAPER --help: its flags; tinynet --list: papers)"


def run_paper(name, argv=None):
    """Runs paper ``name``'s command line on ``argv`` (None: this process's own arguments)
    with ``tinynet.experiment.run_cli``'s error handling."""
    run_cli(get_paper(name).main, argv)


def main(argv=None):
    """The ``tinynet`` command: the first argument names the paper, the rest are its flags."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "--list"):
        print(USAGE + "\n\npapers:")
        for name in list_papers():
            print(f"  {name:22s} {summary(name)}")
        sys.exit(0 if args else 2)
    name = args[0]
    if name not in list_papers():
        print(f"tinynet: error: unknown paper {name!r}; known: {', '.join(list_papers())}",
              file=sys.stderr)
        sys.exit(2)
    if argv is None:
        # the paper's parser reads sys.argv[1:]; a --deterministic re-execution and the
        # recorded command use the unchanged sys.orig_argv
        sys.argv = [sys.argv[0]] + args[1:]
        run_paper(name)
    else:
        run_paper(name, args[1:])
