"""The README's commands, extracted and run in order at quick scale (tests/test_readme.py).

Every line of the README's ```bash blocks is a command (backslash continuations joined, a
shell ``for`` loop kept whole, ``a && b`` split). ``plan`` says what the test does with each:

* ``run``: run as written. A ``--quick`` experiment run is the paper's shared quick run
  (tests/shared_runs.py: the same command with the flags every test adds, made once for the
  whole test session and copied to the run directory the README names); where the command
  cannot be (another dataset or data folder, an environment, a run directory already there) it
  runs in this interpreter with tiny overrides (one step per epoch, epochs x0.01: every stage
  still runs), as do the tools -- "quick scale";
* ``train``: a paper-scale experiment command whose run directory a later README command
  reads (an ensemble of its runs): trained at quick scale, in the run directory its
  ``--quick`` twin uses (``runs/<experiment>-quick``);
* ``dry-run``: any other paper-scale command (days on a GPU, the real dataset): checked with
  ``--quick --dry-run`` -- its flags, the generated twin of its data (``--dataset cifar100``
  becomes ``synthetic-cifar100``) and its model are built, nothing is trained;
* ``refused``: needs hardware this machine lacks (a TPU, named GPUs): must end with one line
  on stderr and exit status 2;
* ``cli``: the installed ``tinynet`` command (or ``python -m tinynet``), in its own process,
  at quick scale like ``run``;
* ``skip``: with the reason (the installation itself, this test suite, a second host).

Tool arguments ``runs/<name>`` that do not exist are read as ``runs/<name>-quick`` (the same
run at quick scale), and a paper-scale tune command gets ``--quick --dry-run``.
Run as ``python tests/readme_commands.py README.md WORKDIR [SHARED_RUNS]``: it executes the
commands in one interpreter where it can (experiments and tools through their ``main``), prints
one line per command and exits 1 if any failed; ``SHARED_RUNS``, the test session's folder of
shared runs (tests/shared_runs.py), where the quick runs come from.
"""
import dataclasses
import os
import re
import shlex
import subprocess
import sys
import time

TINY = ["--steps-per-epoch", "1", "--epochs-scale", "0.01"]
PLACEHOLDER_SCRIPT = "multi_resnet_cifar"  # for experiments/<script>.py


@dataclasses.dataclass
class Command:
    line: int  # the README line it starts on
    text: str  # as written (continuations joined)
    action: str = "run"  # run, train, dry-run, refused, skip, shell, env, tensorboard, python-c,
    # cli (the installed ``tinynet`` command)
    argv: list = dataclasses.field(default_factory=list)
    env: dict = dataclasses.field(default_factory=dict)
    why: str = ""
    shared: list | None = None  # an experiment's arguments as the README gives them, for its
    # shared quick run (None: not shareable)


def bash_blocks(readme):
    """``(first line number, lines)`` of every ```bash block."""
    blocks, current, start = [], None, 0
    for number, line in enumerate(readme.splitlines(), 1):
        if current is None and line.strip() == "```bash":
            current, start = [], number + 1
        elif current is not None and line.strip() == "```":
            blocks.append((start, current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def _strip_comment(text):
    """``text`` without a trailing ``# comment`` outside quotes."""
    quote = None
    for i, c in enumerate(text):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].rstrip()
    return text.rstrip()


def commands(readme):
    """Every command of the README's bash blocks, in order."""
    out = []
    for start, lines in bash_blocks(readme):
        i = 0
        while i < len(lines):
            number, text = start + i, _strip_comment(lines[i])
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1].rstrip() + " " + _strip_comment(lines[i]).strip()
            if text.lstrip().startswith("for "):
                while not re.search(r"\bdone\b", text) and i + 1 < len(lines):
                    i += 1
                    text += "\n" + _strip_comment(lines[i])
                out.append(Command(number, text.strip(), "shell"))
            elif text.strip():
                out.extend(Command(number, part.strip()) for part in text.split(" && "))
            i += 1
    return out


def _has_gpu():
    return os.path.exists("/dev/nvidia0")


def quick_run_dir(argv):
    """The run directory ``python experiments/<script>.py ... --quick`` trains in."""
    if "--run-dir" in argv:
        return argv[argv.index("--run-dir") + 1]
    script = os.path.splitext(os.path.basename(argv[1]))[0]
    if script == "denresnet":
        backbone = argv[argv.index("--backbone") + 1] if "--backbone" in argv else (
            "resnet18" if "--quick" in argv else "resnet101")
        script = f"denresnet-{backbone}"
    return f"runs/{script}-quick"


def read_run_dirs(cmd):
    """The ``runs/<name>`` folders a tool or a ``python -c`` command reads."""
    if not ("tools/" in cmd.text or "load_model" in cmd.text):
        return []
    return [f"runs/{name}" for name in re.findall(r"runs/([A-Za-z0-9_.-]+)", cmd.text)
            if not name.endswith((".md", ".txt"))]  # (outputs, not inputs)


def plan(cmds):
    """Fills in each command's action and argv (module docstring)."""
    for cmd in cmds:
        text = cmd.text
        if cmd.action == "shell":
            if "--strategy multiworker" in text:  # (the two-worker loop on 127.0.0.1)
                cmd.action = "skip"
                cmd.why = ("run by tests/test_distribute.py::test_two_worker_experiment_on_"
                           "localhost_trains_as_mirrored, which also compares it with the "
                           "mirrored run")
            continue
        words = shlex.split(text)
        env = {}
        while words and re.match(r"^[A-Z_]+=", words[0]):
            key, value = words.pop(0).split("=", 1)
            env[key] = value
        cmd.env = env
        if words[:2] == ["pip", "install"]:
            cmd.action, cmd.why = "skip", "the installation (done before the tests; CI runs it)"
        elif words[:3] == ["python", "-m", "pytest"]:
            cmd.action, cmd.why = "skip", "this test suite itself"
        elif "TF_CONFIG" in env and "gs://" in text:
            cmd.action, cmd.why = "skip", "needs two hosts and a gs:// bucket"
        elif words[0] == "tensorboard":
            cmd.action, cmd.argv = "tensorboard", words
        elif words[:2] == ["python", "-c"]:
            cmd.action, cmd.argv = "python-c", words
        elif words[0] == "tinynet" or words[:3] == ["python", "-m", "tinynet"]:
            # the installed command, in its own process as a user types it
            args = words[1:] if words[0] == "tinynet" else words[3:]
            cmd.action = "cli"
            cmd.argv = ["python", "-m", "tinynet", *args] + (TINY if "--quick" in args else [])
        elif words[0] == "python" and words[1].startswith("experiments/"):
            words[1] = words[1].replace("<script>", PLACEHOLDER_SCRIPT)
            cmd.argv = words
            if "--strategy" in words and words[words.index("--strategy") + 1] == "tpu":
                cmd.action, cmd.why = "refused", "no TPU here"
            elif "GPU:" in text and not _has_gpu():
                cmd.action, cmd.why = "refused", "no GPU here"
            elif "--quick" in words:
                cmd.action = "env" if env else "run"
                cmd.argv = words + TINY
                cmd.shared = _shareable(words)
            else:
                cmd.action, cmd.argv = "dry-run", _quick_data(words) + ["--quick", "--dry-run"]
        elif words[0] == "python" and words[1].startswith("tools/"):
            cmd.argv = words
            if os.path.basename(words[1]) == "tune.py" and "--quick" not in words:
                cut = words.index("--") if "--" in words else len(words)
                cmd.action = "dry-run"
                cmd.argv = words[:cut] + ["--quick", "--dry-run"] + words[cut:]
        else:
            raise ValueError(f"README line {cmd.line}: no rule for {text!r}")
    # a paper-scale run whose folder a later tool reads (and no --quick run made) is trained
    written = set()
    for k, cmd in enumerate(cmds):
        if cmd.action in ("run", "env", "train") and "experiments/" in cmd.text:
            written.add(quick_run_dir(cmd.argv))
        for run_dir in read_run_dirs(cmd) if cmd.action == "run" else []:
            if run_dir in written or run_dir + "-quick" in written:
                continue
            for earlier in reversed(cmds[:k]):
                if (earlier.action == "dry-run" and "experiments/" in earlier.text
                        and quick_run_dir(earlier.argv) == run_dir + "-quick"):
                    earlier.action = "train"
                    earlier.argv = [a for a in earlier.argv if a != "--dry-run"]
                    earlier.shared = _shareable(earlier.argv)
                    earlier.argv += TINY
                    written.add(run_dir + "-quick")
                    break
    return cmds


def _shareable(words):
    """The arguments of ``python experiments/<paper>.py ...`` as the README gives them, for
    its shared quick run; None where the command picks its own data."""
    args = list(words[2:])
    return None if "--dataset" in args or "--data-dir" in args else args


def _from_shared_run(cmd, root):
    """Copies the paper's shared quick run for ``cmd`` (made now if this session has none) to
    the run directory the command names; returns ``(ok, detail)``. Where that folder exists
    already (the README runs the command again, perhaps on another backend), returns None and
    points ``cmd`` at the same run as the shared one, to run as written here; a command with
    its own environment runs as written too."""
    import shutil

    from shared_runs import QUICK_TEST_FLAGS, shared_data, shared_run

    paper = os.path.splitext(os.path.basename(cmd.argv[1]))[0]
    flags = [*cmd.shared, *QUICK_TEST_FLAGS[paper]]
    destination = quick_run_dir(cmd.argv)
    if os.path.exists(destination):
        cmd.argv = [*cmd.argv[:2], *flags, "--data-dir", shared_data(None, paper, root)]
        return None
    if cmd.env:
        return None
    # (a --run-dir the README gives is no part of the run's key, and the shared run's own
    # --run-dir, last, wins: the run is copied there instead)
    run_dir, _ = shared_run(None, paper, *flags, data=paper, root=root)
    shutil.copytree(run_dir, destination)
    return True, f"the shared quick run {os.path.basename(os.path.dirname(run_dir))}"


def _quick_data(words):
    """``--dataset cifar100`` -> its generated twin ``synthetic-cifar100``, as ``--quick``
    picks for the script's default dataset (an explicit ``--dataset`` wins over ``--quick``)."""
    out = list(words)
    if "--dataset" in out:
        i = out.index("--dataset") + 1
        if out[i] in ("tiny-imagenet", "cifar10", "cifar100"):
            out[i] = "synthetic-" + out[i]
    return out


def _quick_paths(argv):
    """``runs/<name>`` arguments that do not exist, read as ``runs/<name>-quick``."""
    out = []
    for a in argv:
        if a.startswith("runs/") and not os.path.exists(a):
            quick = a.rstrip("/") + "-quick"
            a = quick if os.path.exists(quick) else a
        out.append(a)
    return out


def _in_process(argv):
    """Runs ``python <script> args`` through the script's ``main`` in this interpreter;
    returns the exit status (``run_cli`` ends with ``sys.exit`` for errors)."""
    import runpy

    saved = sys.argv
    sys.argv = list(argv[1:])
    try:
        runpy.run_path(argv[1], run_name="__main__")
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = saved


def _tensorboard(argv, timeout=90):
    """Starts TensorBoard as written, reads the scalar tags it serves and stops it; returns
    ``(ok, detail)``."""
    import json
    import urllib.request

    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, url = time.time() + timeout, None
        for line in proc.stdout:
            m = re.search(r"(http://[^\s]+:\d+/)", line)
            if m:
                url = m.group(1)
                break
            if time.time() > deadline:
                break
        if url is None:
            return False, "TensorBoard printed no address"
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(url + "data/plugin/scalars/tags", timeout=5) as r:
                    tags = json.load(r)
                if any("epoch_loss" in t for t in tags.values()):
                    return True, f"{len(tags)} runs with scalars"
            except OSError:
                pass
            time.sleep(1)
        return False, "TensorBoard served no epoch_loss scalars"
    finally:
        proc.terminate()
        proc.wait(30)


def execute(cmd, shared_root=None):
    """Runs one planned command; returns ``(ok, detail)``. ``shared_root``: the folder of the
    test session's shared runs (None: every command runs here)."""
    if cmd.action in ("run", "train", "env") and cmd.shared is not None and shared_root:
        done = _from_shared_run(cmd, shared_root)
        if done is not None:
            return done
    if cmd.action == "skip":
        return True, cmd.why
    if cmd.action == "shell":
        proc = subprocess.run(["bash", "-c", cmd.text], capture_output=True, text=True,
                              timeout=900)
        return proc.returncode == 0, f"exit {proc.returncode} {_last(proc.stderr)}"
    if cmd.action == "tensorboard":
        return _tensorboard(cmd.argv)
    if cmd.action in ("python-c", "env", "refused", "cli"):
        argv = [sys.executable] + cmd.argv[1:]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=900,
                              env=dict(os.environ, **cmd.env))
        if cmd.action == "refused":
            lines = [l for l in proc.stderr.splitlines() if l.strip()]
            ok = proc.returncode == 2 and "Traceback" not in proc.stderr and lines and (
                lines[-1].startswith("error:"))
            return ok, f"exit {proc.returncode} ({cmd.why}): {lines[-1] if lines else ''}"
        return proc.returncode == 0, f"exit {proc.returncode} {_last(proc.stderr)}"
    argv = _quick_paths(cmd.argv) if cmd.argv[1].startswith("tools/") else cmd.argv
    code = _in_process(argv)
    return code == 0, f"exit {code}"


def _last(text):
    lines = [l for l in text.splitlines() if l.strip()]
    return lines[-1][:200] if lines else ""


def main(readme_path, workdir, shared_root=None):
    from tinynet.training.distribute import ensure_logical_cpus

    ensure_logical_cpus(3)  # --devices 2 / --model-parallel CPU:0,CPU:1 in this interpreter
    with open(readme_path, encoding="utf-8") as f:
        cmds = plan(commands(f.read()))
    os.chdir(workdir)
    failed = []
    for cmd in cmds:
        start = time.time()
        try:
            ok, detail = execute(cmd, shared_root)
        except Exception as e:  # noqa: BLE001  (reported, and the next command still runs)
            ok, detail = False, f"{type(e).__name__}: {e}"
        line = (f"{'ok ' if ok else 'FAIL'} {time.time() - start:6.1f}s  line {cmd.line:4d}  "
                f"{cmd.action:11s} {cmd.text.splitlines()[0][:100]}  [{detail}]")
        print(line, flush=True)
        if not ok:
            failed.append(line)
    print(f"{len(cmds)} commands, {len(failed)} failed", flush=True)
    for line in failed:
        print(line, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
