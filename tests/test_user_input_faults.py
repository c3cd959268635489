"""The second battery of bad input and faults (issue 22), each case on data or at the flags,
without training: one line, exit status 2, nothing written, and no advice that destroys a run."""
import json
import os

import pytest

from tinynet.papers import get_paper

from conftest import cli_error


def tree(folder):
    return sorted(os.path.relpath(os.path.join(r, f), folder)
                  for r, _, files in os.walk(folder) for f in files)


def test_continuing_into_the_parent_itself_is_refused_saying_so(tmp_path, capsys):
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "config.json").write_text("{}")
    (parent / "state.json").write_text(json.dumps({"status": "complete"}))
    before = tree(tmp_path)
    for same in (parent, tmp_path / "." / "parent", str(parent) + "/"):
        line = cli_error(get_paper("cifar_resnet_design").main,
                         ["--quick", "--continue-epochs", "1", "--run-dir", parent,
                          "--continue-run-dir", same], capsys)
        assert "is the --run-dir itself" in line and "another --continue-run-dir" in line
        assert "--restart" not in line and "{" not in line  # (no protocol dicts)
    assert tree(tmp_path) == before


def test_a_protocol_difference_is_named_in_a_few_words():
    from tinynet.training.identity import describe_difference

    recorded = {"name": "p", "stages": [{"epochs": 3, "lr": 0.1, "recipe": "x" * 200}]}
    now = {"name": "p", "stages": [{"epochs": 4, "lr": 0.1, "recipe": "x" * 200}]}
    said = describe_difference(recorded, now, "config.json")
    assert said == "stages[0].epochs: 3 in config.json, 4 now"
    assert describe_difference(1, 2, "config.json") == "1 in config.json, 2 now"


@pytest.mark.parametrize("argv,flag", [
    (["--checkpoint-every", "-5m"], "--checkpoint-every=<value>"),
    (["--seed", "-x"], "--seed=<value>"),
])
def test_a_value_starting_with_a_dash_is_told_how_to_pass(argv, flag, tmp_path, capsys):
    line = cli_error(get_paper("densenet_model1").main,
                     ["--quick", *argv, "--run-dir", tmp_path / "run"], capsys)
    assert flag in line and "expected one argument" in line
    assert not (tmp_path / "run").exists()
