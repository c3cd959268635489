"""seed 001's experiment end to end at tiny scale, and the error-analysis tool on its run dir."""
import csv
import json

import matplotlib.pyplot as plt
import pytest

from conftest import cli_error, cli_output, copy_run, load_file
from test_protocol import load_script


def test_variants_follow_seed_001():
    script = load_script("resnet_tiny_imagenet")
    for variant, iterations in (("vanilla", 15_000), ("improved", 30_000), ("final", 70_000)):
        p = script.protocol(variant)
        assert sum(s.epochs * s.steps_per_epoch for s in p.stages) == iterations
        assert {s.batch_size for s in p.stages} == {100}
        assert [s.lr.lr for s in p.stages][:2] == [0.1, 0.01]
    assert script.protocol("vanilla").stages[0].epochs * 1000 == 10_000  # annealing at 10k
    assert {s.augment for s in script.protocol("vanilla").stages} == {None}
    assert {s.augment for s in script.protocol("improved").stages} == {"resnet_basic"}
    assert {s.augment for s in script.protocol("final").stages} == {"resnet_heavy"}
    # global mean subtraction: the improved and final protocols (a pipeline step, not a recipe)
    assert [script.protocol(v).normalize for v in ("vanilla", "improved", "final")] == [
        None, "mean", "mean"]
    assert script.VARIANTS["vanilla"][1] is None and script.VARIANTS["final"][1] == 0.5


# resnet_run (conftest): the quick run (ResNet-34 at a quarter width, as --quick trains)

@pytest.mark.slow  # (trains a paper's protocol end to end: CI's slow step)
def test_quick_run_end_to_end(resnet_run):
    state = json.loads((resnet_run / "state.json").read_text())
    assert state["status"] == "complete" and state["completed_epochs"] == 4  # 40, 20, 10 x 0.05
    config = json.loads((resnet_run / "config.json").read_text())
    assert config["model"] == "resnet34" and config["model_kwargs"]["stochastic_depth"] == 0.5
    assert len(config["input_mean"]) == 3  # resnet_heavy keeps the global mean subtraction
    with open(resnet_run / "history.csv") as f:
        assert [float(r["lr"]) for r in csv.DictReader(f)] == pytest.approx([0.1, 0.1, 0.01, 0.001])


@pytest.mark.slow  # (trains a paper's protocol end to end: CI's slow step)
def test_error_analysis_writes_its_files(resnet_run, tmp_path, capsys):
    run_dir = copy_run(resnet_run, tmp_path / "run")  # it writes into the run directory
    cli_output(load_file("tools", "error_analysis").main, [run_dir, "--gallery", "6"], capsys)
    out = run_dir / "analysis"
    metrics = json.loads((out / "metrics.json").read_text())
    with open(run_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    best = max(float(r["val_accuracy"]) for r in rows)
    assert metrics["images"] == 200 and metrics["top1_accuracy"] == pytest.approx(best, abs=1e-6)
    with open(out / "per_class_accuracy.csv") as f:
        per_class = list(csv.DictReader(f))
    assert len(per_class) == 20 and sum(int(r["images"]) for r in per_class) == 200
    with open(out / "confused_pairs.csv") as f:
        pairs = list(csv.DictReader(f))
    assert all(r["true_wnid"] != r["predicted_wnid"] for r in pairs)
    assert sum(int(r["count"]) for r in pairs) <= 200 - round(metrics["top1_accuracy"] * 200)
    for png in ("misclassified.png", "confusion_matrix.png"):
        assert plt.imread(out / png).shape[0] > 100


def test_error_analysis_on_a_missing_run_is_one_line(tmp_path, capsys):
    line = cli_error(load_file("tools", "error_analysis").main, [tmp_path], capsys)
    assert "config.json is missing" in line
