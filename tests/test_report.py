"""Paper vs ours (tinynet.evaluation.reports, tools/report.py): the paper entry each experiment
records, our figures read from a run directory's files, the markdown, and the command line."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from test_protocol import load_script
from tinynet.evaluation.reports import NOT_RECORDED, figure, ours, paper_record, report_markdown
from tinynet.training.rundir import RunDirectory

CITATION = "Someone 2019, A Paper"
HISTORY = [  # global epoch, val_accuracy, val_top5, training accuracy
    (1, 0.125, 0.5, 0.2), (2, 0.3, 0.625, 0.4), (3, 0.25, 0.75, 0.6)]


def write_run(run_dir, paper=None, protocol="densenet_model1_progressive", **files):
    """A run directory as the runner writes it (RunDirectory's own writers)."""
    rd = RunDirectory(str(run_dir))
    os.makedirs(run_dir, exist_ok=True)
    config = {
        "model": "densenet_model1", "model_kwargs": {"width": 0.125},
        "protocol": {"name": protocol, "val_resolution": 64, "eval_batch_size": 64},
        "seed": 0, "dataset": {"name": "synthetic-tiny-imagenet"},
        "dataset_spec": {"name": "synthetic-tiny-imagenet", "args": {}},
        "distribution": {"strategy": "MirroredStrategy", "replicas": 2,
                         "devices": ["/cpu:0", "/cpu:1"], "model_parallel": None},
        "versions": {"tinynet": "0.2.0", "tensorflow": "2.21.0", "keras": "3.15.1"},
        "git_commit": "0123456789abcdef0123", "host": "testhost",
        "devices": ["/physical_device:CPU:0", "/physical_device:GPU:0"],
        "command": ["experiments/densenet_model1.py", "--quick", "--run-dir", "a b"],
        "created": "2025-01-02 03:04:05 UTC"}
    if paper is not None:
        config["paper"] = paper
    rd.write_config(config)
    rd.write_history([
        {"stage": 1, "resolution": 64, "epoch": e, "global_epoch": e, "lr": 0.001,
         "loss": 2.0, "accuracy": train, "top5": 0.5, "val_loss": 2.5, "val_accuracy": val,
         "val_top5": top5, "seconds": 30.0} for e, val, top5, train in HISTORY])
    rd.write_state({"status": "complete", "completed_epochs": 3, "total_epochs": 3,
                    "best_val_accuracy": 0.3, "best_epoch": 2,
                    "updated": "2025-01-02 04:05:06 UTC"})
    for name, content in files.items():
        (run_dir / f"{name}.json").write_text(json.dumps(content))
    return run_dir


def a_paper(differences=()):
    return paper_record(CITATION, [
        figure("top-1 validation accuracy", "val_accuracy", 0.595, comparable=True, at="best"),
        {"what": "validation error at the end", "metric": "val_error", "value": 0.48,
         "comparable": True, "at": "final", "note": "15k iterations"},
        {"what": "test error", "metric": "test_error", "value": 0.451, "comparable": False}],
        differences)


def test_paper_record_round_trips_through_json():
    record = a_paper(["generated data"])
    assert json.loads(json.dumps(record)) == record
    assert record == {"citation": CITATION, "differences": ["generated data"], "figures": [
        {"what": "top-1 validation accuracy", "metric": "val_accuracy", "value": 0.595,
         "comparable": False, "at": "best"},  # a difference makes no figure comparable
        {"what": "validation error at the end", "metric": "val_error", "value": 0.48,
         "comparable": False, "at": "final", "note": "15k iterations"},
        {"what": "test error", "metric": "test_error", "value": 0.451, "comparable": False}]}
    assert [f["comparable"] for f in a_paper()["figures"]] == [True, True, False]
    for bad in (dict(metric="val_acc"), dict(value=59.5), dict(comparable="yes"),
                dict(at="last"), dict(extra=1)):
        with pytest.raises(ValueError):
            paper_record(CITATION, [dict({"what": "x", "metric": "val_accuracy", "value": 0.5,
                                          "comparable": True}, **bad)])


def test_ours_reads_the_history_and_the_test_files(tmp_path):
    run = write_run(tmp_path / "run", a_paper(),
                    test_errors={"final_epoch_test_error": 0.7, "test_is_validation": False,
                                 "best_validation_model_test_error": 0.69},
                    evaluation={"model": "best",
                                "val": {"top1_accuracy": 0.31, "top5_accuracy": 0.6},
                                "val_ten_crop": {"top1_accuracy": 0.33, "top5_accuracy": 0.61}})
    info = ours(run)
    got = {(f["metric"], f["at"], f.get("view"), f["source"]): f["value"]
           for f in info["figures"]}
    assert got[("val_accuracy", "best", None, "history.csv")] == 0.3
    assert got[("val_accuracy", "final", None, "history.csv")] == 0.25
    assert got[("val_error", "final", None, "history.csv")] == pytest.approx(0.75)
    assert got[("val_top5_accuracy", "best", None, "history.csv")] == 0.625
    assert got[("train_accuracy", "final", None, "history.csv")] == 0.6
    assert got[("test_error", "best", None, "test_errors.json")] == 0.69
    assert got[("val_accuracy", "best", "ten_crop", "evaluation.json")] == 0.33
    assert (info["best_epoch"], info["completed_epochs"], info["total_epochs"],
            info["status"], info["training_seconds"]) == (2, 3, 3, "complete", 90.0)
    (tmp_path / "cifar").mkdir()
    run = write_run(tmp_path / "cifar", a_paper(), test_metrics={
        "best_checkpoint": {"top1_accuracy": 0.9, "top5_accuracy": 0.99, "loss": 0.3}})
    got = {(f["metric"], f["at"]): f["value"] for f in ours(run)["figures"]
           if f["source"] == "test_metrics.json"}
    assert got[("test_accuracy", "best")] == 0.9
    assert got[("test_error", "best")] == pytest.approx(0.1)


def test_report_puts_the_paper_beside_ours(tmp_path):
    run = write_run(tmp_path / "run", a_paper(["generated data (synthetic-tiny-imagenet)",
                                                "--quick"]),
                    test_errors={"final_epoch_test_error": 0.7})
    text = report_markdown([run])
    assert text.startswith("# Paper vs ours\n")
    assert f"**Paper:** {CITATION}" in text
    # paper figure | metric | paper | ours (from history.csv) | comparable
    assert ("| top-1 validation accuracy | validation top-1 accuracy (best) | 59.50% | "
            "30.00% (epoch 2) | no: the protocol differs (below) |") in text
    assert ("| validation error at the end | validation top-1 error (final) | 48.00% | "
            "75.00% (epoch 3) | no: 15k iterations; the protocol differs (below) |") in text
    assert "| test error | test top-1 error (best) | 45.10% | n/a |" in text
    assert ("**Differences from the paper's protocol:** generated data "
            "(synthetic-tiny-imagenet); --quick.") in text
    assert "validation top-1 accuracy (final) 25.00% (epoch 3)" in text
    assert "test top-1 error (final) 70.00%" in text
    assert ("- Hardware: host testhost; devices CPU:0, GPU:0; distribution MirroredStrategy, "
            "2 replicas on /cpu:0, /cpu:1") in text
    assert "- Date: started 2025-01-02 03:04:05 UTC, last update 2025-01-02 04:05:06 UTC" in text
    assert "- Command: `python experiments/densenet_model1.py --quick --run-dir 'a b'`" in text
    assert "- Model: `densenet_model1` (width=0.125)" in text
    assert "complete, 3/3 epochs, best validation accuracy at epoch 2" in text
    assert "- Training time: 1 min 30 s" in text
    # comparable when the record says so
    run2 = write_run(tmp_path / "run2", a_paper())
    assert "| 59.50% | 30.00% (epoch 2) | yes |" in report_markdown([run2])


def test_a_run_without_a_paper_entry_still_reports(tmp_path):
    # matched by its protocol name to experiments/densenet_model1.py's figures
    text = report_markdown([write_run(tmp_path / "old")])
    assert "**Paper:** Abai & Rajmalwar 2019" in text and "(not recorded in the run" in text
    assert "| 59.50% | 30.00% (epoch 2) | no: the protocol differs (below) |" in text
    assert NOT_RECORDED in text and "generated data (synthetic-tiny-imagenet); width 0.125" in text
    # a protocol no experiment has
    text = report_markdown([write_run(tmp_path / "other", protocol="my_own")])
    assert "Paper figures not recorded (run made before tinynet 0.3" in text
    assert "validation top-1 accuracy (best) 30.00% (epoch 2)" in text


def run_tool(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "report.py"),
                           *map(str, args)], capture_output=True, text=True, timeout=120)


def test_report_tool_over_run_dirs_and_their_parent(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs / "a", a_paper())
    write_run(runs / "sweep" / "b", a_paper(["--quick"]))
    (runs / "a" / "checkpoints").mkdir()
    out = tmp_path / "report.md"
    proc = run_tool(runs / "a", runs / "sweep" / "b", "--output", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"wrote {out}: 2 runs\n"
    by_dirs = out.read_text()
    assert f"## `{runs / 'a'}`" in by_dirs and f"## `{runs / 'sweep' / 'b'}`" in by_dirs
    assert "| run | paper figure | paper | ours | comparable |" in by_dirs
    proc = run_tool(runs, "--output", out)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().replace(str(runs) + "/", "") == by_dirs.replace(str(runs) + "/", "")
    proc = run_tool(runs / "a")  # stdout without --output
    assert proc.returncode == 0 and "| 59.50% | 30.00% (epoch 2) | yes |" in proc.stdout


@pytest.mark.parametrize("bad", ["missing", "empty"])
def test_report_tool_on_a_bad_dir_is_one_line(tmp_path, bad):
    (tmp_path / "empty").mkdir()
    proc = run_tool(tmp_path / bad)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and str(tmp_path / bad) in proc.stderr


# -- each experiment carries its paper's figures -------------------------------------------------
def figures_of(record):
    json.loads(json.dumps(record))
    return [(f["metric"], f["value"], f.get("at"), f["comparable"]) for f in record["figures"]]


@pytest.mark.parametrize("name, value, train", [("densenet_model1", 0.595, 0.67),
                                                 ("densenet_model2", 0.6273, 0.6811)])
def test_densenet_papers(name, value, train):
    script = load_script(name)
    quick = script.paper(script.parse_args(["--quick"]))
    assert figures_of(quick) == [("val_accuracy", value, "best", False),
                                 ("train_accuracy", train, "final", False)]
    assert "--quick" in quick["differences"] and "Abai & Rajmalwar 2019" in quick["citation"]
    assert [c for *_, c in figures_of(script.paper(script.parse_args([])))] == [True, True]
    flag = ["--stages", "64"] if name == "densenet_model1" else ["--optimizer", "adam"]
    assert script.paper(script.parse_args(flag))["differences"][0].startswith(" ".join(flag))


def test_resnet_paper():
    script = load_script("resnet_tiny_imagenet")
    expected = [("val_error", 0.48, "final"), ("val_error", 0.437, "final"),
                ("test_error", 0.451, "final"), ("val_error", 0.3468, "final")]
    assert [f[:3] for f in figures_of(script.paper(script.parse_args(["--quick"])))] == expected
    full = figures_of(script.paper(script.parse_args(["--variant", "improved"])))
    assert [f[3] for f in full] == [False, True, True, False]
    record = script.paper(script.parse_args(["--depth", "18", "--variant", "improved"]))
    assert record["differences"] == ["--depth 18 (the paper's: 34; the figures are ResNet-34's)"]


def test_cifar_design_paper():
    script = load_script("cifar_resnet_design")
    quick = script.paper(script.parse_args(["--quick"]))
    assert figures_of(quick) == [("val_accuracy", 0.9484, "best", False),
                                 ("test_accuracy", 0.9459, "best", False),
                                 ("test_accuracy", 0.9451, "final", False)]
    assert "--continue-epochs 200" in quick["figures"][0]["note"]
    continued = script.paper(script.parse_args(["--continue-epochs", "200"]))
    assert [f[3] for f in figures_of(continued)] == [True] * 3
    assert figures_of(script.paper(script.parse_args([]), "adam")) == [
        ("val_accuracy", 0.8742, "best", True)]
    assert script.paper(script.parse_args(["--model", "nyu_resnet12"]))["differences"] == [
        "--model nyu_resnet12 (the paper's: nyu_resnet24; the figures are ResNet-24's)"]


def test_multi_resnet_paper():
    script = load_script("multi_resnet_cifar")
    quick = script.paper(script.parse_args(["--quick"]))
    assert figures_of(quick) == [("test_error", 0.0928, "best", False)]
    assert quick["differences"][:2] == ["generated data (synthetic-cifar10)", "--quick"]
    assert figures_of(script.paper(script.parse_args(["--dataset", "cifar100"]))) == [
        ("test_error", 0.2042, "best", True)]
    assert figures_of(script.paper(script.parse_args(["--block", "basic", "--depth", "56"]))) == []
    assert len(script.FIGURES) == 12  # every published figure, for runs that did not record one
