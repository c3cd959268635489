"""DenseNet Model 1 on Tiny ImageNet with progressive resizing (seed 002).

The command line of ``tinynet.papers.densenet_model1``, whose module holds the protocol, the published
figures and the options (``--help`` lists them); ``tinynet densenet_model1 ...`` runs the same from an
installed package.

    python experiments/densenet_model1.py --stages progressive --quick
"""
from tinynet.cli import run_paper

if __name__ == "__main__":
    run_paper("densenet_model1")
