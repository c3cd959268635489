"""The ResNet design space under 5M parameters on CIFAR-10 (seed 004).

The command line of ``tinynet.papers.cifar_resnet_design``, whose module holds the protocol, the published
figures and the options (``--help`` lists them); ``tinynet cifar_resnet_design ...`` runs the same from an
installed package.

    python experiments/cifar_resnet_design.py --quick
"""
from tinynet.cli import run_paper

if __name__ == "__main__":
    run_paper("cifar_resnet_design")
