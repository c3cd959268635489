"""What the Colab notebook (``notebooks/tinynet_colab.ipynb``) calls: a paper's run as a child
process whose output streams into the cell.

The run is a child process rather than code in the notebook's kernel so that it behaves as the
command line (its SIGTERM handler, the ``--deterministic`` re-execution, exit statuses) and so
that TensorFlow's hold on the GPU ends with the run, not with the kernel. A cell's output only
shows what the kernel itself prints, so the child's lines are read and printed here.
"""
import os
import shutil
import signal
import subprocess
import sys

from tinynet.errors import TinynetError

GPU_KEYS = ("H100", "A100", "L4", "T4", "K80")  # as nvidia-smi names them, longest match first


def paper_command(paper, flags):
    """The command that runs ``paper`` with ``flags``: ``python -m tinynet PAPER flags``
    (the installed package's command line; nothing from a clone)."""
    return [sys.executable, "-m", "tinynet", paper, *flags]


def run_paper(paper, *flags, env=None):
    """Runs ``python -m tinynet PAPER FLAGS...`` and prints its output as it comes. Returns
    normally when the run ends with status 0; otherwise raises ``TinynetError`` naming the
    status and the run's last line. Stopping the cell (KeyboardInterrupt) sends the run
    SIGTERM, on which it checkpoints at its next step and exits (a second stop kills it); then
    the cell stops. Re-running the same cell resumes the run from its last checkpoint."""
    command = paper_command(paper, [str(f) for f in flags])
    print("$ " + " ".join(command[1:]), flush=True)
    child_env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, bufsize=1, env=child_env)
    last = ""
    try:
        for line in process.stdout:
            print(line, end="", flush=True)
            last = line.strip() or last
        status = process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGTERM)
        try:
            for line in process.stdout:
                print(line, end="", flush=True)
            process.wait()
        except KeyboardInterrupt:
            process.kill()
            process.wait()
        raise
    if status != 0:
        raise TinynetError(f"{paper} ended with exit status {status}: {last}")


def gpu_name():
    """The first GPU's name as ``nvidia-smi`` gives it, or None (no GPU, or no driver)."""
    if shutil.which("nvidia-smi") is None:
        return None
    result = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                            capture_output=True, text=True)
    names = result.stdout.strip().splitlines() if result.returncode == 0 else []
    return names[0].strip() if names else None


def speed_advice(paper, gpu=None):
    """What to add to ``FLAGS`` on ``gpu`` (an ``nvidia-smi`` name; None: this machine's;
    "": none) and the projected epoch and protocol times of ``paper``'s models there
    (``tinynet.projections``: projections from counted FLOPs, not measurements)."""
    from tinynet.projections import SPEED_FLAGS, SPEED_PRECISION, project_seconds, workloads

    gpu = gpu_name() if gpu is None else gpu
    if not gpu:
        return ["no GPU: Runtime > Change runtime type > GPU (on a CPU only --quick is "
                "practical)"]
    key = next((k for k in GPU_KEYS if k in gpu.upper()), None)
    if key is None:
        return [f"{gpu}: no figures for this GPU (known: {', '.join(GPU_KEYS)}); the "
                f"A100's flags suit any GPU from Ampere on: "
                f"{' '.join(SPEED_FLAGS['A100'])}"]
    flags = SPEED_FLAGS.get(key, [])
    lines = [f"{gpu}: add " + (" ".join(flags) if flags else "nothing (float32 only)")]
    precision = SPEED_PRECISION.get(key, "float32")
    for w in (w for w in workloads().values() if w.paper == paper):
        epoch = project_seconds(w.epoch_flops(), key, precision)
        total = project_seconds(w.flops(), key, precision)
        lines.append(f"  {w.model}: projected {epoch / 60:.1f} min per epoch, "
                     f"{total / 3600:.1f} h for {w.what} ({precision}; a projection)")
    return lines
