"""Installs tinynet: reproductions of five small-image classification papers in Keras 3."""
from setuptools import find_packages, setup

setup(
    name="tinynet",
    version="0.2.0",
    description=(
        "Tiny ImageNet and CIFAR reproductions (DenseNet Models 1/2, ResNets, DenResNet, "
        "Multi-ResNet, ResNet design space) in TensorFlow/Keras 3, resumable after a lost session."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tinynet", "tinynet.*"]),
    # every paper from an installed package, no clone needed: tinynet PAPER [flags]
    entry_points={"console_scripts": ["tinynet = tinynet.cli:main"]},
    python_requires=">=3.10",
    install_requires=[
        # Upper bounds: the minor releases tested (2.21, 3.15); tinynet uses private Keras/TF
        # APIs, listed and checked in tests/test_private_apis.py: run it before raising a bound.
        # keras>=3.3: the first with keras.src and keras.tree, which tinynet imports.
        "tensorflow>=2.16,<2.22",
        "keras>=3.3,<3.16",
        "numpy",
        "pandas",
        "matplotlib",
        "imgaug==0.4.0",
        "opencv-python",
    ],
    extras_require={"test": ["pytest>=7", "optuna>=4.9", "jax>=0.4.30", "tensorboard>=2.16",
                             "pytest-xdist>=3",  # CI's slow step runs on both cores
                             "nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6"],  # notebooks/
                    "tensorboard": ["tensorboard>=2.16"],  # to view <run_dir>/tensorboard
                    "tune": ["optuna>=4.9"],  # tools/tune.py (heartbeat-stale retries: 4.9)
                    "jax": ["jax>=0.4.30"]},  # --backend jax (tests run the models under it)
)
