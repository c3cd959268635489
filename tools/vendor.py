"""Copies Keras and its pure-Python requirements into a folder that travels with the working
tree, for a machine without a package registry (the lent GPU machine: JAX and PyTorch with
CUDA, no TensorFlow, no pip index).

    python tools/vendor.py .vendor                 # here: keras + pure-Python requirements
    python tools/vendor.py .vendor --compiled      # + h5py, optree, ml_dtypes (same Python
                                                   #   version and platform only)
    python tools/vendor.py --check                 # there: what this Python lacks
    PYTHONPATH=.vendor:. KERAS_BACKEND=jax python tools/benchmark.py gpu    # there

Pure Python, copied by default (``pip show keras`` requires absl-py, numpy, rich, namex, h5py,
optree, ml-dtypes, packaging; rich requires markdown-it-py -> mdurl, and pygments; optree
requires typing-extensions): keras, absl-py, rich, markdown-it-py, mdurl, pygments, namex,
packaging, typing-extensions. Compiled, NOT copied by default: h5py, optree, ml_dtypes (and
numpy): the target's Python must already have them -- JAX itself needs numpy and ml_dtypes --
or ``--compiled`` copies this machine's builds, which work only for the same Python version,
platform and a compatible numpy (otherwise copy and unpack wheels built for the target). The
folder is named by the caller; it must reach the other machine (not git-ignored, or passed as
a carried path). Each distribution's files are copied as installed, with its ``.dist-info``
(so ``importlib.metadata`` sees the versions); nothing is downloaded.
"""
import argparse
import importlib
import importlib.metadata
import os
import shutil
import sys

PURE = ("keras", "absl-py", "rich", "markdown-it-py", "mdurl", "pygments", "namex", "packaging",
        "typing-extensions")
COMPILED = ("h5py", "optree", "ml-dtypes")
# distribution -> module to import in --check
MODULES = {"keras": "keras", "absl-py": "absl", "rich": "rich", "markdown-it-py": "markdown_it",
           "mdurl": "mdurl", "pygments": "pygments", "namex": "namex", "packaging": "packaging",
           "typing-extensions": "typing_extensions", "h5py": "h5py", "optree": "optree",
           "ml-dtypes": "ml_dtypes", "numpy": "numpy"}


def copy_distribution(name, target):
    """Copies the installed files of distribution ``name`` into ``target``; returns the count.
    Files outside site-packages (console scripts) and byte-code caches are skipped."""
    dist = importlib.metadata.distribution(name)
    count = 0
    for path in dist.files or ():
        parts = path.parts
        if not parts or parts[0] == ".." or "__pycache__" in parts:
            continue
        source = dist.locate_file(path)
        if not os.path.isfile(source):
            continue
        destination = os.path.join(target, *parts)
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        shutil.copy2(source, destination)
        count += 1
    return dist.version, count


def vendor(target, compiled=False, log=print):
    os.makedirs(target, exist_ok=True)
    for name in PURE + (COMPILED if compiled else ()):
        version, count = copy_distribution(name, target)
        log(f"{name} {version}: {count} files")
    log(f"now: PYTHONPATH={target}:. KERAS_BACKEND=jax python tools/benchmark.py gpu")


def check(log=print):
    """Which of Keras' requirements this Python cannot import; returns them."""
    missing = []
    for name, module in MODULES.items():
        try:
            importlib.import_module(module)
            log(f"ok       {module}")
        except ImportError as error:
            missing.append(name)
            kind = "compiled" if name in COMPILED + ("numpy",) else "pure Python"
            log(f"MISSING  {module} ({kind}): {error}")
    return missing


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", nargs="?", help="folder to copy into (e.g. .vendor)")
    parser.add_argument("--compiled", action="store_true",
                        help="also copy h5py, optree, ml_dtypes (same Python and platform only)")
    parser.add_argument("--check", action="store_true",
                        help="only report which requirements this Python cannot import")
    args = parser.parse_args(argv)
    if args.check:
        return 1 if check() else 0
    if not args.target:
        parser.error("give the target folder (e.g. .vendor), or --check")
    vendor(args.target, args.compiled)
    return 0


if __name__ == "__main__":
    sys.exit(main())
