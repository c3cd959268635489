"""The README, followed line by line, works (issue 12): every command of its bash blocks runs
in order on a fresh working folder, at quick scale (tests/readme_commands.py says what that
means for each kind of command). The fast test checks the plan itself: every command has a
rule, and every run directory a tool reads is written by a command before it."""
import os
import subprocess
import sys

import pytest

from conftest import REPO

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import readme_commands as rc  # noqa: E402
from shared_runs import cache_root  # noqa: E402
from tinynet.training.determinism import DETERMINISTIC_ENV  # noqa: E402


def readme_plan():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        return rc.plan(rc.commands(f.read()))


def test_every_readme_command_has_a_rule_and_reads_only_what_an_earlier_one_wrote():
    cmds = readme_plan()
    assert cmds[0].action == "skip" and cmds[1].argv[:2] == [
        "python", "experiments/densenet_model1.py"] and cmds[1].action == "run"
    trained = {os.path.splitext(os.path.basename(c.argv[1]))[0] for c in cmds
               if c.action == "run" and "experiments/" in c.argv[1]}
    assert trained >= {"densenet_model1", "densenet_model2", "resnet_tiny_imagenet",
                       "cifar_resnet_design", "multi_resnet_cifar", "denresnet"}
    written = set()
    for cmd in cmds:
        if cmd.action in ("run", "train", "env") and "experiments/" in cmd.text:
            written.add(rc.quick_run_dir(cmd.argv))
        for run_dir in rc.read_run_dirs(cmd) if cmd.action == "run" else []:
            assert run_dir in written or run_dir + "-quick" in written, (cmd.line, run_dir)
    assert any(c.action == "tensorboard" for c in cmds)
    assert {c.why for c in cmds if c.action == "refused"} == {"no TPU here", "no GPU here"} or (
        rc._has_gpu())


@pytest.mark.slow
def test_the_readme_followed_line_by_line_works(tmp_path, tmp_path_factory):
    for name in ("experiments", "tools", "tinynet"):
        os.symlink(os.path.join(REPO, name), tmp_path / name)
    # JAX's CPU compile at its lowest optimisation; the deterministic environment set before
    # start, so that a --deterministic run in this interpreter does not restart it
    env = dict(os.environ, XLA_FLAGS="--xla_backend_optimization_level=0", **DETERMINISTIC_ENV)
    # the --quick runs are the papers' shared quick runs (made here if no test made them yet)
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tests", "readme_commands.py"),
                           os.path.join(REPO, "README.md"), str(tmp_path),
                           cache_root(tmp_path_factory)],
                          capture_output=True, text=True, timeout=1500, env=env)
    report = "\n".join(l for l in proc.stdout.splitlines()
                       if l.startswith(("ok ", "FAIL")) or "commands," in l)
    print(report)
    assert proc.returncode == 0, report + "\n" + proc.stderr[-4000:]
    assert (tmp_path / "runs" / "previews" / "densenet_model2.png").exists()
    assert not os.path.exists(os.path.join(REPO, "runs", "previews"))
