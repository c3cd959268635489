"""DenseNet Model 2 on Tiny ImageNet: six cyclic-lr phases (seed 002).

The command line of ``tinynet.papers.densenet_model2``, whose module holds the protocol, the published
figures and the options (``--help`` lists them); ``tinynet densenet_model2 ...`` runs the same from an
installed package.

    python experiments/densenet_model2.py --quick
"""
from tinynet.cli import run_paper

if __name__ == "__main__":
    run_paper("densenet_model2")
