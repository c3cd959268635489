"""Multi-ResNet on CIFAR-10/100 (seed 003).

The command line of ``tinynet.papers.multi_resnet_cifar``, whose module holds the protocol, the published
figures and the options (``--help`` lists them); ``tinynet multi_resnet_cifar ...`` runs the same from an
installed package.

    python experiments/multi_resnet_cifar.py --quick
"""
from tinynet.cli import run_paper

if __name__ == "__main__":
    run_paper("multi_resnet_cifar")
