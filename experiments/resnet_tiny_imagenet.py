"""ResNets from scratch on Tiny ImageNet (seed 001).

The command line of ``tinynet.papers.resnet_tiny_imagenet``, whose module holds the protocol, the published
figures and the options (``--help`` lists them); ``tinynet resnet_tiny_imagenet ...`` runs the same from an
installed package.

    python experiments/resnet_tiny_imagenet.py --depth 34 --block e --variant final
"""
from tinynet.cli import run_paper

if __name__ == "__main__":
    run_paper("resnet_tiny_imagenet")
