"""DenResNet: ImageNet-pretrained backbones fine-tuned on Tiny ImageNet (seed 000).

The command line of ``tinynet.papers.denresnet``, whose module holds the protocol, the published
figures and the options (``--help`` lists them); ``tinynet denresnet ...`` runs the same from an
installed package.

    python experiments/denresnet.py --backbone resnet101
"""
from tinynet.cli import run_paper

if __name__ == "__main__":
    run_paper("denresnet")
