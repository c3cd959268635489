"""tools/tune.py: Optuna search over an experiment's hyperparameter flags, resumable, with a
re-queued trial resuming its own run directory. Most tests run a stand-in experiment script
(instant, no TensorFlow); the slow one runs a real experiment's --quick preset."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO

optuna = pytest.importorskip("optuna")

TUNE = os.path.join(REPO, "tools", "tune.py")

# Takes the flags the tuner passes, records each call in its run dir, and "trains" instantly:
# best_val_accuracy = 0.4 + 0.1 * log10(lr scale). --hang-run-dir NAME: the first call in that
# run dir sleeps (to be killed); --stop-run-dir NAME: the first call there exits 143 (a run
# stopped by SIGTERM); --fail-run-dir NAME / --fail-unless-default: exit 2.
FAKE = '''
import argparse, json, math, os, sys, time
p = argparse.ArgumentParser()
p.add_argument("--run-dir"); p.add_argument("--lr-scale", type=float, default=None)
p.add_argument("--hang-run-dir"); p.add_argument("--fail-run-dir"); p.add_argument("--stop-run-dir")
p.add_argument("--fail-unless-default", action="store_true")
args, rest = p.parse_known_args()
os.makedirs(args.run_dir, exist_ok=True)
with open(os.path.join(args.run_dir, "calls.txt"), "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
with open(os.path.join(args.run_dir, "pid"), "w") as f:
    f.write(str(os.getpid()))
name = os.path.basename(os.path.normpath(args.run_dir))
if name == args.fail_run_dir or (args.fail_unless_default and args.lr_scale is not None):
    print("traceback noise", file=sys.stderr)
    print("error: boom", file=sys.stderr)
    sys.exit(2)
if name == args.stop_run_dir and not os.path.exists(os.path.join(args.run_dir, "stopped")):
    open(os.path.join(args.run_dir, "stopped"), "w").close()
    sys.exit(143)  # as a run stopped by SIGTERM after its checkpoint
started = os.path.join(args.run_dir, "started")
if name == args.hang_run_dir and not os.path.exists(started):
    open(started, "w").close()
    time.sleep(300)
with open(os.path.join(args.run_dir, "state.json"), "w") as f:
    json.dump({"best_val_accuracy": 0.4 + 0.1 * math.log10(args.lr_scale or 1.0)}, f)
'''


@pytest.fixture
def fake(tmp_path):
    path = tmp_path / "fake_experiment.py"
    path.write_text(FAKE)
    return str(path)


def load_tune():
    import importlib.util
    spec = importlib.util.spec_from_file_location("tune_tool", TUNE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tune(*argv):
    """Runs the tool in this process (TensorFlow is already imported here) as its command line
    does: user mistakes end in SystemExit(2)."""
    from tinynet.experiment import run_cli
    run_cli(load_tune().main, [str(a) for a in argv])


def calls(run_dir):
    return [json.loads(line) for line in (run_dir / "calls.txt").read_text().splitlines()]


def trials_of(study_dir, name):
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{study_dir}/study.db")
    return study.get_trials()


def test_search_writes_table_and_plot_and_continues(fake, tmp_path, capsys):
    d = tmp_path / "study"
    tune(fake, "--trials", 2, "--study-dir", d, "--lr-range", "2,10")
    trials = trials_of(d, "tune-fake_experiment")
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    # the default configuration first: no override flag at all (1 is outside the lr range,
    # so it has no lr_scale parameter either)
    assert trials[0].user_attrs == {"default": True, "run_dir": "trial-0"} and not trials[0].params
    assert calls(d / "trial-0") == [["--run-dir", str(d / "trial-0"), "--seed", "0",
                                     "--epochs-scale", "0.1"]]
    lr = trials[1].params["lr_scale"]
    assert 2 <= lr <= 10 and calls(d / "trial-1") == [[
        "--run-dir", str(d / "trial-1"), "--seed", "0", "--epochs-scale", "0.1",
        "--lr-scale", repr(lr)]]
    assert trials[1].value == pytest.approx(0.4 + 0.1 * math.log10(lr))
    out = capsys.readouterr().out
    gain = trials[1].value - 0.4
    summary = (f"default (trial 0): 0.4000; best - default: {gain:+.4f} absolute, "
               f"{gain / 0.4:+.1%} relative")
    table = (d / "trials.md").read_text()
    assert summary in out and summary in table
    assert "| trial | state | lr scale | best val_accuracy | run dir | note |" in table
    assert f"| 0 | COMPLETE | 1 | 0.4000 | {d / 'trial-0'} | default |" in table
    assert f"| 1 | COMPLETE | {lr:.4g} | {trials[1].value:.4f} | {d / 'trial-1'} |  |" in table
    png = (d / "trials.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000

    tune(fake, "--trials", 3, "--study-dir", d, "--lr-range", "2,10")  # one more, and only one
    trials = trials_of(d, "tune-fake_experiment")
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert [len(calls(d / f"trial-{i}")) for i in range(3)] == [1, 1, 1]
    assert (d / "trials.md").read_text().count("| COMPLETE |") == 3
    tune(fake, "--trials", 3, "--study-dir", d, "--lr-range", "2,10")  # nothing left to do
    assert len(trials_of(d, "tune-fake_experiment")) == 3

    with pytest.raises(SystemExit) as exit_:  # the study records its options
        tune(fake, "--trials", 4, "--study-dir", d, "--lr-range", "1,10")
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert "is another search: lr_range [2.0, 10.0] (now [1.0, 10.0])" in err


@pytest.mark.slow  # (trains a paper's protocol end to end: CI's slow step)
def test_a_failed_trial_is_recorded_and_the_search_goes_on(fake, tmp_path, capsys):
    d = tmp_path / "study"
    tune(fake, "--trials", 2, "--study-dir", d, "--batch-sizes", "16,32", "--wd-range",
         "1e-5,1e-3", "--", "--fail-run-dir", "trial-1")
    trials = trials_of(d, "tune-fake_experiment")
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[1].user_attrs["error"] == "exit 2: error: boom"
    assert "trial 1 FAILED (exit 2: error: boom)" in capsys.readouterr().out
    args = calls(d / "trial-2")[0]
    assert args[args.index("--batch-size") + 1] in ("16", "32")
    assert float(args[args.index("--weight-decay") + 1]) == pytest.approx(
        trials[2].params["weight_decay"])
    table = (d / "trials.md").read_text()
    assert "| trial | state | lr scale | weight decay | batch size | best val_accuracy |" in table
    assert "| 1 | FAIL |" in table and "exit 2: error: boom" in table
    assert "| 0 | COMPLETE | 1 | protocol | protocol | 0.4000 |" in table  # no config.json

    # every trial failing the same way is a mistake: stop after --max-failures in a row
    d = tmp_path / "failing"
    with pytest.raises(SystemExit) as exit_:
        tune(fake, "--trials", 3, "--study-dir", d, "--max-failures", 2, "--",
             "--fail-unless-default")
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err == (
        "error: 2 trials in a row failed, the last with: exit 2: error: boom\n")
    assert (d / "trials.md").read_text().count("| FAIL |") == 2


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie is dead
    except OSError:
        return False


def _start_and_wait(fake, d, *extra):
    """Starts the tool in a subprocess whose trial 0 hangs; returns it once trial 0 runs."""
    proc = subprocess.Popen([sys.executable, TUNE, fake, "--trials", "2", "--study-dir", str(d),
                             "--heartbeat", "1", *extra, "--", "--hang-run-dir", "trial-0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (d / "trial-0" / "started").exists():
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    return proc, int((d / "trial-0" / "pid").read_text())


def _assert_resumed(d, retry_number):
    trials = trials_of(d, "tune-fake_experiment")
    first, retry = trials[0], trials[retry_number]
    assert first.state.name == "FAIL" and retry.state.name == "COMPLETE"
    assert retry.params == first.params and retry.user_attrs["run_dir"] == "trial-0"
    assert retry.system_attrs["failed_trial"] == 0
    # the same run directory, called twice with the same arguments (the run resumes)
    assert len(calls(d / "trial-0")) == 2 and calls(d / "trial-0")[0] == calls(d / "trial-0")[1]
    assert not (d / f"trial-{retry_number}").exists()
    assert sum(t.state.name == "COMPLETE" for t in trials) == 2


@pytest.mark.slow  # (trains a paper's protocol end to end: CI's slow step)
def test_a_killed_search_retries_its_trial_in_the_same_run_dir(fake, tmp_path):
    d = tmp_path / "study"
    proc, child = _start_and_wait(fake, d)
    proc.send_signal(signal.SIGKILL)  # no clean-up at all: the trial stays RUNNING
    proc.communicate()
    deadline = time.time() + 10
    while _alive(child):  # the run got SIGTERM when the tuner died
        assert time.time() < deadline, "the trial's run outlived the tuner"
        time.sleep(0.05)
    trials = trials_of(d, "tune-fake_experiment")
    assert [t.state.name for t in trials] == ["RUNNING"]
    # re-run: the heartbeat of trial 0 goes stale after 2 s and it is re-queued
    tune(fake, "--trials", 2, "--study-dir", d, "--heartbeat", 1, "--",
         "--hang-run-dir", "trial-0")
    trials = trials_of(d, "tune-fake_experiment")
    retry = next(t.number for t in trials if t.system_attrs.get("failed_trial") == 0)
    _assert_resumed(d, retry)
    assert f"re-queued as {retry}" in (d / "trials.md").read_text()


def test_a_stopped_search_requeues_its_trial_at_once(fake, tmp_path):
    d = tmp_path / "study"
    proc, child = _start_and_wait(fake, d)
    proc.send_signal(signal.SIGTERM)  # stops the run, re-queues the trial, exits as Ctrl-C
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "trial 0 stopped and re-queued: its retry resumes" in err and not _alive(child)
    trials = trials_of(d, "tune-fake_experiment")
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]
    tune(fake, "--trials", 2, "--study-dir", d, "--heartbeat", 1, "--",
         "--hang-run-dir", "trial-0")
    _assert_resumed(d, 1)


def test_a_run_stopped_by_a_signal_is_resumed(fake, tmp_path, capsys):
    d = tmp_path / "study"
    tune(fake, "--trials", 2, "--study-dir", d, "--", "--stop-run-dir", "trial-1")
    trials = trials_of(d, "tune-fake_experiment")
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[2].params == trials[1].params and trials[2].user_attrs["run_dir"] == "trial-1"
    assert len(calls(d / "trial-1")) == 2 and not (d / "trial-2").exists()
    assert "trial 1 stopped and re-queued: its retry resumes" in capsys.readouterr().out
    assert "| 1 | FAIL |" in (d / "trials.md").read_text()


@pytest.mark.parametrize("argv,message", [
    (["nosuchexperiment"], "error: unknown experiment 'nosuchexperiment'; known: "),
    (["FAKE", "--lr-range", "10,1"],
     "argument --lr-range: expected an lr scale range LO,HI with 0 < LO < HI, got '10,1'"),
    (["FAKE", "--lr-range", "0,1"], "argument --lr-range: expected an lr scale range"),
    (["FAKE", "--wd-range", "1e-4"], "argument --wd-range: expected a weight decay range"),
    (["FAKE", "--batch-sizes", "0,32"], "argument --batch-sizes: expected batch sizes"),
    (["FAKE", "--head-fraction-range", "0.1,0.5"],
     "error: --head-fraction-range applies to the denresnet experiment"),
    (["denresnet", "--head-fraction-range", "0.5,1.5"],
     "argument --head-fraction-range: expected a head fraction range LO,HI with 0 < LO < HI < 1"),
    (["FAKE", "--", "--run-dir", "x"], "error: --run-dir after -- is set by the tuner"),
    (["FAKE", "--study-dir", "FILE/study"], "error: cannot write the study directory"),
    (["FAKE", "--storage", "nosuchdb://x"], "error: cannot open the study storage nosuchdb://x"),
])
def test_bad_input_gives_one_line(argv, message, fake, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    argv = [a.replace("FAKE", fake).replace("FILE", str(tmp_path / "file")) for a in argv]
    if "--study-dir" not in argv:
        argv += ["--study-dir", str(tmp_path / "study")]
    with pytest.raises(SystemExit) as exit_:
        tune(*argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and message in err, err


def test_command_line_errors_are_one_line(tmp_path):
    proc = subprocess.run([sys.executable, TUNE, "resnet_tiny_imagenet", "--lr-range", "1",
                           "--study-dir", str(tmp_path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "tune.py: error: argument --lr-range: expected an lr scale range" in proc.stderr


# ~20 s: CI's slow step
@pytest.mark.slow
def test_quick_search_of_a_real_experiment(tmp_path, capsys):
    """``--quick``: two tiny trials of the fastest experiment (Multi-ResNet's --quick preset,
    2 epochs of 2 steps each), about 17 s on 2 cores."""
    d = tmp_path / "study"
    tune("multi_resnet_cifar", "--quick", "--study-dir", d, "--wd-range", "1e-5,1e-3", "--",
         "--data-dir", tmp_path / "data")
    trials = trials_of(d, "tune-multi_resnet_cifar-quick")
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for t in trials:
        state = json.loads((d / f"trial-{t.number}" / "state.json").read_text())
        assert state["status"] == "complete" and t.value == state["best_val_accuracy"]
    config = json.loads((d / "trial-1" / "config.json").read_text())
    assert config["protocol"]["optimizer"]["weight_decay"] == trials[1].params["weight_decay"]
    assert config["protocol"]["optimizer"]["learning_rate"] == pytest.approx(
        0.1 * trials[1].params["lr_scale"])
    table = (d / "trials.md").read_text()
    assert "| 0 | COMPLETE | 1 | protocol (0.0001) |" in table
    assert (d / "trials.png").stat().st_size > 5000 and "best: trial" in capsys.readouterr().out
