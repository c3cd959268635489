"""A paper runs from an installed package, without a clone: ``pip install .`` (not editable)
into a fresh virtual environment, then ``tinynet PAPER`` and ``python -m tinynet PAPER`` from
another folder. The environment sees the machine's packages (TensorFlow is not installed
again); tinynet itself must come from the environment's own copy."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("venv")
    env_dir = root / "env"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(env_dir)],
                   check=True, timeout=120)
    python = env_dir / "bin" / "python"
    # a copy of the source, so that no build file lands in the checkout
    source = root / "source"
    files = subprocess.run(["git", "-C", REPO, "ls-files", "-co", "--exclude-standard", "-z"],
                           check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if not os.path.exists(os.path.join(REPO, name)):
            continue
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(open(os.path.join(REPO, name), "rb").read())
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", str(source)], check=True, timeout=300,
                   capture_output=True)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return env_dir, elsewhere


def _run(argv, cwd, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)


@pytest.mark.slow
def test_a_paper_runs_from_a_non_editable_install(venv):
    env_dir, elsewhere = venv
    python = str(env_dir / "bin" / "python")
    where = _run([python, "-c", "import tinynet, tinynet.papers; print(tinynet.__file__)"],
                 elsewhere)
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(env_dir)), where.stdout  # not the checkout
    listing = _run([str(env_dir / "bin" / "tinynet"), "--list"], elsewhere)
    assert listing.returncode == 0 and "multi_resnet_cifar" in listing.stdout, listing.stderr
    run = _run([python, "-m", "tinynet", "multi_resnet_cifar", "--quick", "--epochs-scale",
                "0.01", "--steps-per-epoch", "1", "--width", "0.125"], elsewhere)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    run_dir = elsewhere / "runs" / "multi_resnet_cifar-quick"
    assert (run_dir / "final_model.keras").exists() and (run_dir / "test_errors.json").exists()
    command = json.loads((run_dir / "config.json").read_text())["command"]
    assert command[:4] == ["-m", "tinynet", "multi_resnet_cifar", "--quick"], command
    refused = _run([python, "-m", "tinynet", "no_such_paper"], elsewhere)
    assert refused.returncode == 2 and "unknown paper 'no_such_paper'" in refused.stderr
