"""Golden runs: a refactor of the training code must not change what a run computes.

    python tools/golden.py make runs/golden-before     # before the change (old code)
    python tools/golden.py make runs/golden-after      # after it
    python tools/golden.py compare runs/golden-before runs/golden-after

``make`` trains one tiny ``--deterministic`` run per kind of protocol the runner supports
(``RUNS``: progressive resizing with plateau windows, restart-from-best cyclic phases, constant
stages with and without stochastic depth and mean subtraction, mixup with a per-epoch rule, a
Nesterov step schedule, a two-phase fine-tune with a frozen backbone), each through the
experiment's own command line, in a fresh interpreter. ``compare`` reports, per run, whether
lr.csv is byte-identical, history.csv identical apart from its ``seconds`` column, every array
of every checkpoint (epoch checkpoints and stage-best weights) bit-identical, each checkpoint's
meta record equal apart from timings, config.json's keys the same, and the result files the
experiment writes after training (test metrics, evaluation) equal. Exit status 1 if anything
differs.

``resume-old`` checks that a run directory written by the other code still resumes: it copies
a golden directory, removes its last checkpoint and final model (as a kill before the last
epoch's end would leave it) and re-runs the same command, which must end with the same arrays.
"""
import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = ["--deterministic", "--steps-per-epoch", "2"]
RUNS = {  # name -> (script, arguments); each run's --run-dir is <folder>/<name>
    "densenet_model1_progressive": ("densenet_model1.py",
                                    ["--stages", "progressive", "--quick", *STEPS]),
    "densenet_model2_restart_from_best": ("densenet_model2.py", ["--quick", *STEPS]),
    "resnet18_vanilla": ("resnet_tiny_imagenet.py",
                         ["--quick", "--depth", "18", "--variant", "vanilla", *STEPS]),
    "resnet18_improved": ("resnet_tiny_imagenet.py",
                          ["--quick", "--depth", "18", "--variant", "improved", *STEPS]),
    "cifar_resnet_design_mixup": ("cifar_resnet_design.py",
                                  ["--quick", "--epochs-scale", "0.02", *STEPS]),
    "multi_resnet": ("multi_resnet_cifar.py", ["--quick", *STEPS]),
    "denresnet_two_phase": ("denresnet.py", ["--quick", "--two-phase", *STEPS]),
}
RESULT_FILES = ("test_metrics.json", "test_errors.json", "evaluation.json")
TIMING_KEYS = ("seconds", "updated", "created")


def command(name, run_dir):
    script, args = RUNS[name]
    return [sys.executable, os.path.join(REPO, "experiments", script), *args,
            "--run-dir", run_dir]


def make(folder, names):
    os.makedirs(folder, exist_ok=True)
    for name in names:
        run_dir = os.path.join(folder, name)
        if os.path.exists(os.path.join(run_dir, "state.json")):
            print(f"{name}: exists, kept", flush=True)
            continue
        proc = subprocess.run(command(name, run_dir), capture_output=True, text=True, cwd=REPO)
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        print(f"{name}: {status}", flush=True)
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-4000:], sep="\n")
            sys.exit(1)


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def _npz(path):
    with open(path, "rb") as f:
        blob = f.read()
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _history(path):
    import pandas as pd

    return pd.read_csv(path).drop(columns=["seconds"])


def _keras_weights(path):
    """The arrays of a .keras file's weights, in file order."""
    import h5py

    with zipfile.ZipFile(path) as z, h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as f:
        arrays = []
        f.visititems(lambda n, o: arrays.append((n, o[()])) if isinstance(o, h5py.Dataset)
                     else None)
        return arrays


def compare_run(a, b):
    """A list of the differences between run directories ``a`` and ``b`` (empty: identical)."""
    problems = []

    def read(path):
        with open(path, "rb") as f:
            return f.read()

    if read(os.path.join(a, "lr.csv")) != read(os.path.join(b, "lr.csv")):
        problems.append("lr.csv differs")
    ha, hb = _history(os.path.join(a, "history.csv")), _history(os.path.join(b, "history.csv"))
    if list(ha.columns) != list(hb.columns) or not ha.equals(hb):
        problems.append("history.csv differs")
    ca = sorted(os.listdir(os.path.join(a, "checkpoints")))
    cb = sorted(os.listdir(os.path.join(b, "checkpoints")))
    if ca != cb:
        problems.append(f"checkpoint files differ: {ca} vs {cb}")
    for name in sorted(set(ca) & set(cb)):
        xa, xb = _npz(os.path.join(a, "checkpoints", name)), _npz(os.path.join(b, "checkpoints",
                                                                             name))
        meta_key = "meta" if "meta" in xa else "paths"
        ma, mb = (json.loads(str(xa.pop(meta_key))), json.loads(str(xb.pop(meta_key))))
        for meta in (ma, mb):  # Keras numbers a second optimizer of a kind in one process
            for key in ("model_variables", "optimizer_variables"):  # (sgd_1/...): as restored
                if key in meta:
                    meta[key] = [re.sub(r"^([^/]+?)_\d+/", r"\1/", v) for v in meta[key]]
        if _without_timings(ma) != _without_timings(mb):
            keys = sorted(k for k in set(ma) | set(mb)
                          if _without_timings(ma.get(k)) != _without_timings(mb.get(k)))
            problems.append(f"{name}: meta differs in {keys}")
        if sorted(xa) != sorted(xb):
            problems.append(f"{name}: array names differ")
        for key in sorted(set(xa) & set(xb)):
            if xa[key].dtype != xb[key].dtype or xa[key].shape != xb[key].shape or (
                    xa[key].tobytes() != xb[key].tobytes()):
                problems.append(f"{name}: array {key} differs")
    for model in ("best_model.keras", "final_model.keras"):
        wa, wb = _keras_weights(os.path.join(a, model)), _keras_weights(os.path.join(b, model))
        if [n for n, _ in wa] != [n for n, _ in wb] or any(
                x.tobytes() != y.tobytes() for (_, x), (_, y) in zip(wa, wb)):
            problems.append(f"{model}: weights differ")
    ka = set(json.loads(read(os.path.join(a, "config.json"))))
    kb = set(json.loads(read(os.path.join(b, "config.json"))))
    if ka != kb:
        problems.append(f"config.json keys differ: only in {a}: {sorted(ka - kb)}, only in "
                        f"{b}: {sorted(kb - ka)}")
    for name in RESULT_FILES:
        pa, pb = os.path.join(a, name), os.path.join(b, name)
        if os.path.exists(pa) != os.path.exists(pb):
            problems.append(f"{name}: present in one run only")
        elif os.path.exists(pa) and (_without_timings(json.loads(read(pa)))
                                     != _without_timings(json.loads(read(pb)))):
            problems.append(f"{name} differs")
    return problems


def compare(a, b, names):
    failed = False
    for name in names:
        problems = compare_run(os.path.join(a, name), os.path.join(b, name))
        failed |= bool(problems)
        print(f"{name}: " + ("identical" if not problems else "; ".join(problems)), flush=True)
    return failed


def resume_old(old, scratch, names):
    """Each run of ``old`` with its last checkpoint and final model removed, resumed by this
    code: it must end as the untouched run ended."""
    failed = False
    for name in names:
        run_dir = os.path.join(scratch, name)
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.copytree(os.path.join(old, name), run_dir)
        checkpoints = sorted(n for n in os.listdir(os.path.join(run_dir, "checkpoints"))
                             if n.startswith("ckpt-"))
        os.remove(os.path.join(run_dir, "checkpoints", checkpoints[-1]))
        os.remove(os.path.join(run_dir, "final_model.keras"))
        proc = subprocess.run(command(name, run_dir), capture_output=True, text=True, cwd=REPO)
        if proc.returncode != 0 or "resuming" not in proc.stdout:
            print(f"{name}: resume failed (exit {proc.returncode})\n{proc.stdout[-1500:]}\n"
                  f"{proc.stderr[-3000:]}")
            failed = True
            continue
        problems = [p for p in compare_run(os.path.join(old, name), run_dir)
                    if not p.startswith("config.json")]
        failed |= bool(problems)
        print(f"{name}: resumed from {checkpoints[-2]}, "
              + ("identical" if not problems else "; ".join(problems)), flush=True)
    return failed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    m = sub.add_parser("make", help="train the golden runs into FOLDER/<name>")
    m.add_argument("folder")
    c = sub.add_parser("compare", help="compare two folders of golden runs")
    c.add_argument("a")
    c.add_argument("b")
    r = sub.add_parser("resume-old", help="resume runs made by other code (OLD) into SCRATCH")
    r.add_argument("old")
    r.add_argument("scratch")
    for p in (m, c, r):
        p.add_argument("--only", nargs="+", choices=sorted(RUNS), default=list(RUNS))
    args = parser.parse_args(argv)
    if args.what == "make":
        make(args.folder, args.only)
    elif args.what == "compare":
        sys.exit(1 if compare(args.a, args.b, args.only) else 0)
    else:
        sys.exit(1 if resume_old(args.old, args.scratch, args.only) else 0)


if __name__ == "__main__":
    main()
