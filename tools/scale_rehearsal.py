"""Every paper at full width on a dataset of the real size, in the real on-disk format: what a
user meets before and around training, measured, each figure beside its goal.

    python tools/scale_rehearsal.py --root /big/disk/scale           # all six, ~30 min on 2 cores
    python tools/scale_rehearsal.py --root /tmp/s --papers multi_resnet_cifar --no-record

The data are generated once under ``--root`` (``tinynet.data.synthetic``): Tiny ImageNet with
100,000 training, 10,000 validation and 10,000 test JPEGs in the real folder layout, CIFAR-10
with 50,000 training and 10,000 test images in the real pickles. Each paper's own command runs
as a child process (``python -m tinynet PAPER --dataset <real name> ...``, at the paper's width
and batch; DenResNet with ``--weights none`` since nothing is downloaded here), checkpointing
after every step, and is SIGKILLed once it has what is measured:

* **first step**: seconds from the command to the end of its first training step, less one
  step's compute (the second step's duration): on a GPU that compute is milliseconds, and what
  remains is what the user waits for (imports, reading and decoding the data, building the
  model and pipeline, tracing). Goal: 60 s. Run first on the generated files just written (the
  operating system's page cache holds them: closer to "warm" than a fresh VM's disk is).
* **again**: the same in a new run directory with the files read before. Goal: 15 s.
* **resume**: the same command again after the SIGKILL: to the end of the first step it
  trains after restoring the step checkpoint, less one step. Goal: 60 s.
* **host memory**: the peak resident memory of a run at batch 2 (``--batch-size 2``, killed
  after its first step), i.e. everything but the activations: on a GPU those live in the
  GPU's memory, on this CPU they are host memory too (the ``at the paper's batch`` column, for
  what a CPU run needs). Goal: 6 GB (a standard Colab runtime has about 12).
* **checkpoint**: the size of the step checkpoint the run wrote, and the time to write it
  again here (the same arrays, ``tinynet.training.checkpoint``'s writer); **best model**: the
  ``.keras`` file of the full-width model, size and save time. Goal: under 10% of an epoch as
  projected for a T4 in float16 (``tinynet.projections``; README, *Projected GPU times*).
* **validation pass**: a full pass over the validation set at the protocol's evaluation batch,
  timed on ``--val-images`` images and scaled to the set (a full pass at full width takes tens
  of minutes on a CPU), with the T4 projection beside it.
"""
import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS)

PAPERS = {  # paper -> (dataset, the folder under --root, flags beyond the paper's own, the
    # tinynet.projections workload of the model the paper's command trains)
    "densenet_model1": ("tiny-imagenet", "tiny", [], "densenet_model1"),
    "densenet_model2": ("tiny-imagenet", "tiny", [], "densenet_model2"),
    "resnet_tiny_imagenet": ("tiny-imagenet", "tiny", [], "resnet34"),
    "cifar_resnet_design": ("cifar10", "cifar", [], "nyu_resnet24"),
    "multi_resnet_cifar": ("cifar10", "cifar", [], "multi_resnet200_k5"),
    "denresnet": ("tiny-imagenet", "tiny", ["--weights", "none"], "transfer_resnet101"),
}
GOALS = {"first_step": 60.0, "again": 15.0, "resume": 60.0, "host_gb": 6.0,
         "checkpoint_share": 0.10}
GB = 1024 ** 3


FULL_SIZE = {"tiny": dict(num_classes=200, train_per_class=500, val_per_class=50,
                         test_images=10_000),
             "cifar": dict(num_classes=10, train_per_class=5000, test_per_class=1000)}


def generate(root, sizes=FULL_SIZE, only=("tiny", "cifar")):
    """The generated datasets (full size by default) under ``root``, made once; the seconds
    it took."""
    from tinynet.data.synthetic import write_synthetic_cifar, write_synthetic_tiny_imagenet

    start = time.perf_counter()
    tiny = os.path.join(root, "tiny", "tiny-imagenet-200")
    if "tiny" in only and not os.path.exists(tiny):
        os.makedirs(os.path.dirname(tiny), exist_ok=True)
        write_synthetic_tiny_imagenet(tiny, **sizes["tiny"])
    cifar = os.path.join(root, "cifar", "cifar-10-batches-py")
    if "cifar" in only and not os.path.exists(cifar):
        os.makedirs(os.path.dirname(cifar), exist_ok=True)
        write_synthetic_cifar(cifar, "cifar10", **sizes["cifar"])
    return time.perf_counter() - start


def _peak_rss(pid):
    """VmHWM of ``pid`` in bytes (the kernel's own peak of its resident memory), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def watch(command, paths, timeout):
    """Runs ``command`` until every file of ``paths`` exists (then SIGKILLs it), or it ends.
    Returns ``({path: seconds from start}, peak resident bytes, output)``."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    seen, peak = {}, 0
    try:
        while len(seen) < len(paths) and process.poll() is None:
            if time.perf_counter() - start > timeout:
                break
            for path in paths:
                if path not in seen and os.path.exists(path):
                    seen[path] = time.perf_counter() - start
            peak = max(peak, _peak_rss(process.pid) or 0)
            time.sleep(0.01)  # a small model's step checkpoint may live only two steps
    finally:
        peak = max(peak, _peak_rss(process.pid) or 0)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()
        reader.join(timeout=10)
    return seen, peak, "".join(lines)


def _step_checkpoint(run_dir, steps):
    return os.path.join(run_dir, "checkpoints", f"ckpt-00000-s{steps:06d}.npz")


def _require(seen, paths, output, what):
    missing = [p for p in paths if p not in seen]
    if missing:
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise RuntimeError(f"{what}: {os.path.basename(missing[0])} never appeared; the run "
                           f"said:\n{tail}")


def rehearse_runs(paper, root, scratch, timeout, flags=()):
    """The child-process figures of ``paper`` (with ``flags`` added: a scaled-down test's):
    first step (twice), resume, memory."""
    dataset, folder, extra, _ = PAPERS[paper]
    base = [sys.executable, "-m", "tinynet", paper, "--dataset", dataset, "--data-dir",
            os.path.join(root, folder), "--checkpoint-every", "1steps", "--progress-every", "0",
            *extra, *flags]
    out = {}
    run_dir = os.path.join(scratch, paper)
    s1, s2, s3 = (_step_checkpoint(run_dir, k) for k in (1, 2, 3))
    seen, peak, output = watch(base + ["--run-dir", run_dir], [s1, s2], timeout)
    _require(seen, [s1, s2], output, f"{paper} first run")
    step = seen[s2] - seen[s1]
    out.update(first_step=seen[s1] - step, step_seconds=step, peak_paper_batch=peak,
               checkpoint_bytes=os.path.getsize(s1))
    seen, _, output = watch(base + ["--run-dir", run_dir], [s3], timeout)
    _require(seen, [s3], output, f"{paper} resume")
    out["resume"] = seen[s3] - step
    out["checkpoint"] = s3  # (s1 is gone: the last two are kept)
    again_dir = os.path.join(scratch, paper + "-again")
    first, second = _step_checkpoint(again_dir, 1), _step_checkpoint(again_dir, 2)
    seen, _, output = watch(base + ["--run-dir", again_dir], [first, second], timeout)
    _require(seen, [first, second], output, f"{paper} second run")
    out["again"] = seen[first] - (seen[second] - seen[first])
    small_dir = os.path.join(scratch, paper + "-batch2")
    seen, peak, output = watch(base + ["--run-dir", small_dir, "--batch-size", "2"],
                               [_step_checkpoint(small_dir, 1)], timeout)
    _require(seen, [_step_checkpoint(small_dir, 1)], output, f"{paper} at batch 2")
    out["host_peak"] = peak
    out["config"] = os.path.join(run_dir, "config.json")
    return out


def measure_files_and_validation(config_path, checkpoint, val_images, scratch):
    """In this process: the checkpoint's write time, the best model's size and save time, and
    one validation pass's time per image at the protocol's evaluation batch."""
    import keras
    import numpy as np

    import tinynet  # noqa: F401 (registers the layers a saved model names)
    from tinynet.models import get_model
    from tinynet.training.checkpoint import _write_npz

    with open(config_path) as f:
        config = json.load(f)
    protocol = config["protocol"]
    num_classes = config["data"]["num_classes"]
    with np.load(checkpoint) as data:
        arrays = {k: data[k] for k in data.files}
    target = os.path.join(scratch, "rewrite.npz")
    start = time.perf_counter()
    _write_npz(target, arrays)
    checkpoint_seconds = time.perf_counter() - start
    model = get_model(config["model"], num_classes=num_classes, **config["model_kwargs"])
    saved = os.path.join(scratch, "best_model.keras")
    start = time.perf_counter()
    model.save(saved)
    save_seconds = time.perf_counter() - start
    px, batch = protocol["val_resolution"], protocol["eval_batch_size"]
    x = np.random.default_rng(0).random((batch, px, px, 3), np.float32)
    model.predict_on_batch(x)  # tracing
    n = max(1, val_images // batch)
    start = time.perf_counter()
    for _ in range(n):
        model.predict_on_batch(x)
    per_image = (time.perf_counter() - start) / (n * batch)
    # this process's peak: the model, and the activations of one evaluation batch on the CPU
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return dict(val_peak=peak, val_images=config["data"]["num_val"],
                checkpoint_write=checkpoint_seconds, model_bytes=os.path.getsize(saved),
                model_save=save_seconds, val_per_image=per_image, model=config["model"],
                val_px=px, eval_batch=batch, params=model.count_params())


def _cell(value, goal, fmt, unit=""):
    ok = value <= goal
    return f"{fmt.format(value)}{unit} ({'ok' if ok else 'MISSES'} <= {fmt.format(goal)}{unit})"


def projected_t4(model, what):
    """Seconds a T4 in float16 is projected to take for workload ``model``'s epoch or
    validation pass (None for None: a scaled-down test's model)."""
    from tinynet.projections import FORWARD_FLOPS, project_seconds, workloads

    if model is None:
        return None
    w = workloads()[model]
    flops = w.epoch_flops() if what == "epoch" else w.val_images * FORWARD_FLOPS[model,
                                                                                  w.val_px]
    return project_seconds(flops, "T4", "mixed_float16")


def rehearse(paper, root, scratch, timeout, val_images, flags=()):
    """Every figure of ``paper`` (``rehearse_runs``' and ``measure_files_and_validation``')."""
    runs = rehearse_runs(paper, root, scratch, timeout, flags)
    script = (f"import json, sys; sys.path.insert(0, {TOOLS!r}); import scale_rehearsal as s; "
              f"print('RESULT ' + json.dumps(s.measure_files_and_validation({runs['config']!r}, "
              f"{runs['checkpoint']!r}, {val_images}, {scratch!r})))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    result = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
    if not result:
        raise RuntimeError(f"{paper}: measuring files and validation failed:\n"
                           f"{done.stderr[-2000:]}")
    runs.update(json.loads(result[0][len("RESULT "):]))
    # a scaled-down test's model is no paper's: nothing to project
    runs["workload"] = None if flags else PAPERS[paper][3]
    return runs


def row(paper, r):
    """The table's cells for ``paper``'s figures ``r``."""
    t4_epoch = projected_t4(r["workload"], "epoch")
    t4_val = projected_t4(r["workload"], "val")
    write = r["checkpoint_write"] + r["model_save"]
    share = ("no projection" if t4_epoch is None else
             f"{write / t4_epoch:.1%} of a T4 epoch: "
             f"{'ok' if write / t4_epoch <= GOALS['checkpoint_share'] else 'MISSES'} <= 10%")
    val_here = r["val_per_image"] * r["val_images"]
    return (paper, f"{r['model']} ({r['params'] / 1e6:.1f} M)",
            _cell(r["first_step"], GOALS["first_step"], "{:.0f}", " s"),
            _cell(r["again"], GOALS["again"], "{:.0f}", " s"),
            _cell(r["resume"], GOALS["resume"], "{:.0f}", " s"),
            _cell(r["host_peak"] / GB, GOALS["host_gb"], "{:.1f}", " GB"),
            f"{r['peak_paper_batch'] / GB:.1f} GB; validation {r['val_peak'] / GB:.1f} GB",
            f"{r['checkpoint_bytes'] / 2 ** 20:.0f} MB in {r['checkpoint_write']:.1f} s; "
            f"{r['model_bytes'] / 2 ** 20:.0f} MB in {r['model_save']:.1f} s ({share})",
            f"{val_here / 60:.1f} min here" + ("" if t4_val is None else
                                               f", T4 {t4_val:.0f} s (projected)")
            + f"; batch {r['eval_batch']} at {r['val_px']} px",
            f"{r['step_seconds']:.1f} s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True,
                        help="where the full-size generated datasets are made (about 1 GB)")
    parser.add_argument("--papers", nargs="+", default=list(PAPERS), choices=list(PAPERS))
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds one run may take to reach what is measured")
    parser.add_argument("--val-images", type=int, default=256,
                        help="validation images timed (scaled to the whole set)")
    parser.add_argument("--no-record", dest="record", action="store_false")
    args = parser.parse_args(argv)
    root = os.path.abspath(args.root)
    print(f"the full-size datasets under {root}: made in {generate(root):.0f} s (0: there "
          f"already)", flush=True)
    # every paper's latest figures, kept beside the data: a subset re-run replaces its rows
    stored_path = os.path.join(root, "rehearsal.json")
    stored = json.load(open(stored_path)) if os.path.exists(stored_path) else {}
    for paper in args.papers:
        scratch = tempfile.mkdtemp(prefix=f"rehearsal-{paper}-")
        try:
            print(f"{paper} ...", flush=True)
            result = rehearse(paper, root, scratch, args.timeout, args.val_images)
            stored[paper] = dict(result, measured=time.strftime("%Y-%m-%d"),
                                 commit=_commit())
            print(" | ".join(row(paper, result)), flush=True)
            with open(stored_path, "w") as f:
                json.dump(stored, f, indent=1)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    from benchmark import machine, markdown_table, record

    rows = [row(paper, stored[paper]) + (f"{stored[paper]['measured']} "
                                         f"{stored[paper]['commit']}",)
            for paper in PAPERS if paper in stored]
    table = markdown_table(
        ["paper", "model (params)", "first step", "again", "resume", "host memory",
         "at the paper's batch (CPU)", "checkpoint; best model", "validation pass",
         "a training step here", "measured at"], rows)
    print(table)
    note = (f"`python tools/scale_rehearsal.py` on {machine()}: full width, full-size "
            f"generated data in the real formats, each paper's own command and batch. "
            f"Definitions and goals: the tool's docstring. first step / again / resume: "
            f"seconds from the command to the end of the first training step less one step's "
            f"compute. host memory: peak resident memory of a run at batch 2 (on a GPU the "
            f"activations are the GPU's). Validation: timed on {args.val_images} images and "
            f"scaled; the T4 figure is a projection (tinynet.projections).")
    if args.record:
        record("Scale rehearsal: every paper at full size (tools/scale_rehearsal.py)", table,
               note)


def _commit():
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, cwd=TOOLS)
    return done.stdout.strip() or "unknown"


if __name__ == "__main__":
    main()
