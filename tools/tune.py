"""Bayesian hyperparameter search (Optuna, TPE) over an experiment script's common
hyperparameter flags: ``--lr-scale``, ``--weight-decay``, ``--batch-size`` (and DenResNet's
two-phase ``--head-fraction``), each trial a shortened run of the script.

    python tools/tune.py resnet_tiny_imagenet --trials 30 -- --depth 18 --variant improved
    python tools/tune.py cifar_resnet_design --wd-range 1e-5,1e-3 --batch-sizes 64,128,256
    python tools/tune.py denresnet --head-fraction-range 0.05,0.5 -- --backbone resnet18
    python tools/tune.py multi_resnet_cifar --quick          # two tiny trials, under a minute

DenResNet's authors tried Bayesian optimisation of their hyperparameters ("various packages",
gains marginal) without stating the search space (docs/protocols.md, section DenResNet); this tool
makes the search a reproducible, resumable command with its space on the command line.

A trial runs paper EXPERIMENT of ``tinynet.papers`` as ``python -m tinynet EXPERIMENT`` (or
any script path taking the common flags of ``tinynet.experiment``) as a subprocess with its own
run directory STUDY_DIR/trial-<number>,
the protocol shortened by ``--epochs-scale`` (default 0.1), ``--seed`` (the same for every
trial, so trials differ only in their hyperparameters), the sampled flags and the ARGS after
``--``. Its stdout and stderr go to STUDY_DIR/logs/trial-<number>.out/.err (a retry appends to
the log of the run it resumes). The objective is
the run's best validation accuracy (state.json ``best_val_accuracy``). A trial whose script
exits non-zero is marked FAIL with the last line of its stderr, and the search goes on (it
stops after ``--max-failures`` failures in a row: every trial failing the same way is a
mistake in the command, e.g. ``--wd-range`` for an experiment whose weight decay sits in the
model, which ``--weight-decay`` refuses).

Search space: ``--lr-scale`` log-uniform over ``--lr-range`` (default 0.1,10); with
``--wd-range``, ``--weight-decay`` log-uniform; with ``--batch-sizes``, ``--batch-size``
categorical; for the denresnet experiment, with ``--head-fraction-range``, ``--two-phase
--head-fraction`` uniform. The first trial is the default configuration -- no override flag
at all: lr scale 1, the protocol's own weight decay and batch size (and its one-phase
fine-tuning) -- so the report says how far the best trial is from the protocol as published.
TPE (``optuna.samplers.TPESampler``: 10 random trials, then the tree-structured Parzen
estimator) models each parameter independently, since the default trial has only the
parameters that are not the protocol's own (``multivariate`` TPE would model jointly only the
parameters every trial has); it is seeded from ``--seed`` and the number of trials so far, so a
resumed search does not repeat the draws made before it stopped, and a sequential search is
reproducible.

Resuming: the study lives in ``--storage`` (default ``sqlite:///STUDY_DIR/study.db``);
re-running the same command continues it until ``--trials`` trials are COMPLETE in total
(``--trials`` may grow between runs; any other option must stay the same, as the study
records them). Every running trial records a heartbeat (``--heartbeat`` seconds); a trial whose
process died (killed, machine lost) is found stale after twice that and re-queued with the same
parameters and the SAME run directory, so its run resumes from its last checkpoint instead of
starting over (``RDBStorage(heartbeat_interval=..., heartbeat_stale_trial_callback=
RetryHeartbeatStaleTrialCallback())``). A search stopped with Ctrl-C or SIGTERM stops its run
(SIGTERM: the run checkpoints and exits) and re-queues the trial at once, as it does a trial
whose run alone was stopped by a signal (exit 143 or 130). On Linux a trial's run gets SIGTERM
when the tuner dies, so a killed tuner leaves no run writing on.

Parallel: several processes given the same ``--storage`` and ``--study-dir`` share the study
(one machine: the default SQLite file is enough for a few processes; several machines: a
PostgreSQL or MySQL URL, ``postgresql://user:password@host/db``, and a ``--study-dir`` on a
shared file system mounted on each machine -- trials record their run directory relative to
it). Each process runs one trial at a time and stops when COMPLETE + RUNNING trials reach
``--trials``; a process with nothing left to start waits for the running ones, so each prints
the final table. TPE's constant liar keeps parallel processes from sampling the same point.

Results, after every trial: STUDY_DIR/trials.md (a table of every trial: number, state,
parameters, best val_accuracy, run directory, and the best-vs-default difference, absolute and
relative; also printed) and STUDY_DIR/trials.png (the objective per trial, the best so far,
the default trial marked; failed trials are in the table only).

Why Optuna and not keras-tuner: Optuna keeps a study in an RDB storage (a SQLite file, or a
PostgreSQL/MySQL URL) that survives a killed process and that several processes or machines
share for parallel trials with no further set-up; its heartbeats with
``RetryHeartbeatStaleTrialCallback`` (the former ``RetryFailedTrialCallback``) re-queue a trial
whose process died. keras-tuner keeps its state in a directory of per-trial files with one
oracle per process, and parallel search needs its chief/worker mode (a chief serving the oracle
over gRPC at ``KERASTUNER_ORACLE_IP``/``PORT``, ``KERASTUNER_TUNER_ID`` per worker); it also
tunes a model built in the tuner's process, while a trial here is a whole experiment script
with its own resumable run directory.
"""
import argparse
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import warnings

from tinynet.errors import TinynetError
from tinynet.experiment import (OneLineParser, positive_float, positive_int, random_seed,
                                run_cli)
from tinynet.papers import get_paper, list_papers
from tinynet.run_reader import RunReader


def _papers_searching(option):
    """The papers whose module lists ``option`` in its ``SEARCH`` (the searches their authors
    made, as data: DenResNet's authors tuned their fine-tuning by Bayesian optimisation)."""
    return [name for name in list_papers() if option in getattr(get_paper(name), "SEARCH", {})]


DEFAULT_EXPERIMENT = _papers_searching("default")[0]  # seed 000: the search its authors made
HEAD_FRACTION_EXPERIMENTS = _papers_searching("head_fraction")  # --two-phase --head-fraction F
DEFAULT_EPOCHS_SCALE = 0.1
QUICK_EPOCHS_SCALE, QUICK_STEPS, QUICK_TRIALS = 0.01, 2, 2
STOP_WAIT_S = 120  # how long a stopped run may take to checkpoint before it is killed
# flags the tuner sets on every trial itself; ARGS after -- may not give them
CONTROLLED = ("--run-dir", "--seed", "--epochs-scale", "--restart", "--quick", "--lr-scale",
              "--weight-decay", "--batch-size")
PARAMS = (("lr_scale", "lr scale"), ("weight_decay", "weight decay"),
          ("batch_size", "batch size"), ("head_fraction", "head fraction"))

# Runs the trial's script with PR_SET_PDEATHSIG = SIGTERM (kept across exec): if the tuner
# dies, its run checkpoints and stops instead of writing on into a run directory that the
# re-queued trial will resume.
_LAUNCH = """import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))
except Exception:
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(128 + signal.SIGTERM)
os.execv(sys.executable, [sys.executable] + sys.argv[2:])
"""


class TrialFailed(Exception):
    """A trial's script failed (non-zero exit, or no best_val_accuracy)."""


class TrialStopped(Exception):
    """A trial's run was stopped by a signal (SIGTERM: it checkpointed; SIGINT) while the tuner
    went on: the trial is re-queued to resume its run directory."""


STOPPED = {128 + signal.SIGTERM, 128 + signal.SIGINT, -signal.SIGTERM, -signal.SIGINT}


def _range(low, high, what):
    """argparse type: ``LO,HI`` with ``low < LO < HI < high`` (high None: no bound)."""
    def parse(text):
        parts = text.split(",")
        try:
            lo, hi = (float(p) for p in parts) if len(parts) == 2 else (None, None)
        except ValueError:
            lo = hi = None
        if lo is None or not (math.isfinite(lo) and math.isfinite(hi) and low < lo < hi
                              and (high is None or hi < high)):
            bound = f"{low:g} < LO < HI" + (f" < {high:g}" if high is not None else "")
            raise argparse.ArgumentTypeError(f"expected {what} LO,HI with {bound}, got {text!r}")
        return lo, hi
    return parse


def _batch_sizes(text):
    try:
        sizes = sorted({int(p) for p in text.split(",")})
    except ValueError:
        sizes = [0]
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"expected batch sizes like 32,64,128 (integers >= 1), "
                                         f"got {text!r}")
    return sizes


def resolve_experiment(text):
    """``(name, command)``: a paper of ``tinynet.papers`` (``resnet_tiny_imagenet``, or its
    entry point ``experiments/resnet_tiny_imagenet.py``) runs as ``python -m tinynet NAME``,
    which needs no clone; any other existing script path runs as itself."""
    name = os.path.splitext(os.path.basename(text))[0]
    if text.endswith(".py") and os.path.isfile(text) and (
            name not in list_papers() or os.path.basename(os.path.dirname(
                os.path.abspath(text))) != "experiments"):
        return name, [sys.executable, os.path.abspath(text)]
    if name in list_papers():
        return name, [sys.executable, "-m", "tinynet", name]
    raise TinynetError(f"unknown experiment {text!r}; known: {', '.join(list_papers())} "
                       f"(or the path of a script that takes tinynet.experiment's flags)")


def split_passthrough(argv):
    """The tuner's own arguments and the ARGS after the first ``--``."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def parse_args(argv):
    parser = OneLineParser(prog="tune.py", description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           usage="%(prog)s [EXPERIMENT] [options] [-- ARGS...]")
    parser.add_argument("experiment", metavar="EXPERIMENT", nargs="?",
                        default=DEFAULT_EXPERIMENT,
                        help="a paper of tinynet.papers (resnet_tiny_imagenet, or "
                             "experiments/resnet_tiny_imagenet.py) or a script path (default "
                             f"{DEFAULT_EXPERIMENT}, seed 000's search)")
    parser.add_argument("--trials", type=positive_int, default=None,
                        help=f"COMPLETE trials in the study when the search stops (default 20; "
                             f"{QUICK_TRIALS} with --quick); re-run with more to continue")
    parser.add_argument("--study-dir", default=None,
                        help="trial run directories, logs, trials.md/png (default "
                             "runs/tune-EXPERIMENT, runs/tune-EXPERIMENT-quick with --quick)")
    parser.add_argument("--storage", default=None,
                        help="Optuna RDB URL shared by parallel processes (default "
                             "sqlite:///STUDY_DIR/study.db; several machines: postgresql://...)")
    parser.add_argument("--study-name", default=None, help="default tune-EXPERIMENT[-quick]")
    parser.add_argument("--epochs-scale", type=positive_float, default=None,
                        help=f"each trial's --epochs-scale: the shortened protocol (default "
                             f"{DEFAULT_EPOCHS_SCALE:g}; {QUICK_EPOCHS_SCALE:g} with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_TRIALS} tiny trials: the experiment's --quick preset, "
                             f"{QUICK_STEPS} steps per epoch, epochs x{QUICK_EPOCHS_SCALE:g}")
    parser.add_argument("--seed", type=random_seed, default=0,
                        help="seeds the sampler and is every trial's --seed (default 0; 0 to "
                             "2**32-1)")
    parser.add_argument("--lr-range", type=_range(0, None, "an lr scale range"),
                        default=(0.1, 10.0), metavar="LO,HI",
                        help="--lr-scale, log-uniform (default 0.1,10)")
    parser.add_argument("--wd-range", type=_range(0, None, "a weight decay range"), default=None,
                        metavar="LO,HI", help="--weight-decay, log-uniform (default: not searched)")
    parser.add_argument("--batch-sizes", type=_batch_sizes, default=None, metavar="N,N,...",
                        help="--batch-size, categorical, e.g. 32,64,128 (default: not searched)")
    parser.add_argument("--head-fraction-range", type=_range(0, 1, "a head fraction range"),
                        default=None, metavar="LO,HI",
                        help=f"{', '.join(HEAD_FRACTION_EXPERIMENTS)} only: --two-phase "
                             f"--head-fraction F, "
                             f"uniform (default: not searched)")
    parser.add_argument("--heartbeat", type=positive_int, default=60, metavar="SECONDS",
                        help="a running trial's heartbeat; one silent for twice this is "
                             "re-queued (default 60)")
    parser.add_argument("--max-failures", type=positive_int, default=3,
                        help="stop after this many failed trials in a row (default 3)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the search and the first trial's command, check that the "
                             "experiment accepts it (its own --dry-run), and exit; nothing is "
                             "written")
    own, passthrough = split_passthrough(list(argv))
    args = parser.parse_args(own)
    args.passthrough = passthrough
    args.name, args.command = resolve_experiment(args.experiment)
    for arg in passthrough:
        flag = arg.split("=", 1)[0]
        if flag in CONTROLLED or (args.head_fraction_range and flag in (
                "--two-phase", "--head-fraction")):
            raise TinynetError(f"{flag} after -- is set by the tuner on every trial; use the "
                               f"tuner's own option instead (see --help)")
    if args.head_fraction_range and args.name not in HEAD_FRACTION_EXPERIMENTS:
        raise TinynetError(f"--head-fraction-range applies to the "
                           f"{', '.join(HEAD_FRACTION_EXPERIMENTS)} experiment (its --two-phase "
                           f"--head-fraction), not {args.name!r}")
    suffix = "-quick" if args.quick else ""
    args.trials = args.trials or (QUICK_TRIALS if args.quick else 20)
    args.epochs_scale = args.epochs_scale or (
        QUICK_EPOCHS_SCALE if args.quick else DEFAULT_EPOCHS_SCALE)
    args.study_dir = args.study_dir or os.path.join("runs", f"tune-{args.name}{suffix}")
    args.study_name = args.study_name or f"tune-{args.name}{suffix}"
    return args


def prepare_study_dir(path):
    try:
        os.makedirs(os.path.join(path, "logs"), exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".probe-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise TinynetError(f"cannot write the study directory {path}: "
                           f"{e.strerror or e}") from None


def search_config(args):
    """What the study records and a resumed search must repeat."""
    return {"experiment": args.name, "epochs_scale": args.epochs_scale, "quick": args.quick,
            "seed": args.seed, "args": args.passthrough, "lr_range": list(args.lr_range),
            "wd_range": list(args.wd_range) if args.wd_range else None,
            "batch_sizes": args.batch_sizes,
            "head_fraction_range": list(args.head_fraction_range)
            if args.head_fraction_range else None}


def _import_optuna():
    try:
        import optuna
    except ImportError:
        raise TinynetError("tools/tune.py needs Optuna: pip install -e '.[tune]' (or pip "
                           "install optuna)") from None
    if not hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):
        raise TinynetError(f"tools/tune.py needs Optuna >= 4.9, found {optuna.__version__}")
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the tuner reports trials itself
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def open_study(args, optuna):
    """The study in ``args.storage`` (created with the default trial queued first), checked to
    be this search's."""
    url = args.storage or "sqlite:///" + os.path.abspath(os.path.join(args.study_dir, "study.db"))
    engine_kwargs = ({"connect_args": {"timeout": SQLITE_TIMEOUT}} if url.startswith("sqlite")
                     else {})
    try:
        storage = optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=args.heartbeat,
            grace_period=2 * args.heartbeat,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback())
    except Exception as e:  # bad URL, missing driver, unreachable server, damaged file
        raise storage_error(e, url) from None
    config = search_config(args)
    try:
        return _create_or_load(args, optuna, storage, config, url)
    except TinynetError:
        raise
    except Exception as e:  # (a database locked by another process, met at the first write)
        raise storage_error(e, url) from None


SQLITE_TIMEOUT = 60  # seconds a SQLite study waits for another process's lock


def storage_error(e, url):
    """The ``TinynetError`` for what opening ``--storage`` met, naming the fix; the password
    of a URL is never printed."""
    shown = re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)
    text = " ".join(str(e).replace(url, shown).split()) or type(e).__name__
    where = f"the study storage {shown}"
    if "Could not parse" in text or type(e).__name__ == "ArgumentError":
        fix = ("it is not a database URL; give sqlite:////abs/path/study.db or "
               "postgresql://user@host/db, or leave --storage out (STUDY_DIR/study.db)")
    elif "unable to open database file" in text:
        fix = ("SQLite cannot create or open that file (its folder is missing or not "
               "writable); create the folder, or leave --storage out (STUDY_DIR/study.db)")
    elif "file is not a database" in text or "malformed" in text:
        fix = ("the file is not a SQLite database (damaged, or another file); move it aside "
               "and re-run to start the study again, or give another --storage")
    elif "database is locked" in text:
        fix = (f"another process holds it locked and kept it more than {SQLITE_TIMEOUT} s; "
               f"wait for that process (another tools/tune.py, or a program with the file "
               f"open) and re-run")
    elif isinstance(e, ModuleNotFoundError):
        fix = f"its database driver is not installed ({text}); pip install it"
    else:
        fix = text
    return TinynetError(f"cannot open {where}: {fix}")


def _create_or_load(args, optuna, storage, config, url):
    url = re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)  # printed from here on
    try:
        study = optuna.create_study(storage=storage, study_name=args.study_name,
                                    direction="maximize", sampler=sampler(optuna, args.seed, 0))
        study.set_user_attr("tune", config)
        default = {"lr_scale": 1.0} if args.lr_range[0] <= 1 <= args.lr_range[1] else {}
        study.enqueue_trial(default, user_attrs={"default": True})
        print(f"new study {args.study_name!r} in {url}", flush=True)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=storage, study_name=args.study_name,
                                  sampler=sampler(optuna, args.seed, 0))
        stored = study.user_attrs.get("tune")
        if stored is None:  # (created by a process that has not recorded it yet)
            study.set_user_attr("tune", config)
        elif stored != json.loads(json.dumps(config)):
            diff = ", ".join(f"{k} {stored.get(k)!r} (now {v!r})" for k, v in
                             json.loads(json.dumps(config)).items() if stored.get(k) != v)
            raise TinynetError(f"study {args.study_name!r} in {url} is another search: {diff}; "
                               f"repeat its options or give another --study-name/--study-dir")
        if study.direction != optuna.study.StudyDirection.MAXIMIZE:
            raise TinynetError(f"study {args.study_name!r} in {url} is not a tools/tune.py study")
        print(f"continuing study {args.study_name!r} in {url}: {len(study.trials)} trials so "
              f"far", flush=True)
    return study


def sampler(optuna, seed, trials_so_far):
    """TPE seeded from ``seed`` and the number of trials so far (see the module docstring)."""
    return optuna.samplers.TPESampler(seed=(seed * 1_000_003 + trials_so_far) % 2 ** 32,
                                      multivariate=False, constant_liar=True)


def run_dir_of(args, trial_attrs):
    return os.path.join(args.study_dir, trial_attrs["run_dir"])


def suggest(trial, args):
    """The trial's parameters, and the flags they give (none for the default trial)."""
    default = trial.user_attrs.get("default", False)
    params = {}
    if not default or args.lr_range[0] <= 1 <= args.lr_range[1]:
        params["lr_scale"] = trial.suggest_float("lr_scale", *args.lr_range, log=True)
    if default:
        return params, []
    flags = ["--lr-scale", repr(params["lr_scale"])]
    if args.wd_range:
        params["weight_decay"] = trial.suggest_float("weight_decay", *args.wd_range, log=True)
        flags += ["--weight-decay", repr(params["weight_decay"])]
    if args.batch_sizes:
        params["batch_size"] = trial.suggest_categorical("batch_size", args.batch_sizes)
        flags += ["--batch-size", str(params["batch_size"])]
    if args.head_fraction_range:
        params["head_fraction"] = trial.suggest_float("head_fraction", *args.head_fraction_range)
        flags += [*get_paper(args.name).SEARCH["head_fraction"], repr(params["head_fraction"])]
    return params, flags


def trial_command(args, run_dir, flags):
    command = list(args.command) + ["--run-dir", run_dir, "--seed", str(args.seed),
                                    "--epochs-scale", repr(args.epochs_scale)]
    if args.quick:
        command += ["--quick", "--steps-per-epoch", str(QUICK_STEPS)]
    return command + flags + list(args.passthrough)


def last_line(path, offset):
    """The last non-empty line written to ``path`` after ``offset``."""
    try:
        with open(path, "rb") as f:
            f.seek(max(offset, os.path.getsize(path) - 65536))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


def run_script(command, log_base):
    """Runs a trial's command, stdout and stderr appended to ``log_base``.out/.err; returns
    ``(exit status, last stderr line)``. Interrupted, it stops the run (SIGTERM: the run
    checkpoints) before re-raising."""
    launch = ([sys.executable, "-c", _LAUNCH, str(os.getpid()), *command[1:]]
              if sys.platform.startswith("linux") else command)
    with open(log_base + ".out", "ab") as out, open(log_base + ".err", "ab") as err:
        out.write(f"$ {shlex.join(command)}\n".encode())
        out.flush()
        offset = err.tell()
        proc = subprocess.Popen(launch, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        try:
            status = proc.wait()
        except BaseException:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(STOP_WAIT_S)
                except BaseException:
                    proc.kill()
                    proc.wait()
            raise
    line = last_line(log_base + ".err", offset)
    if status < 0:
        line = f"killed by {signal.Signals(-status).name}" + (f" ({line})" if line else "")
    return status, line


def make_objective(args, ran):
    def objective(trial):
        ran["number"] = trial.number
        params, flags = suggest(trial, args)
        if "run_dir" not in trial.user_attrs:
            trial.set_user_attr("run_dir", f"trial-{trial.number}")
        name = trial.user_attrs["run_dir"]
        run_dir = os.path.join(args.study_dir, name)
        retry = trial_number(trial.study, trial.number).system_attrs.get("failed_trial")
        print(f"trial {trial.number}"
              + (" (the default configuration)" if trial.user_attrs.get("default") else "")
              + (f" (retry of trial {retry}: resumes {run_dir})" if retry is not None else "")
              + f": {describe_params(params) or 'no override'} -> {run_dir}, log "
              f"{os.path.join(args.study_dir, 'logs', name)}.out", flush=True)
        start = time.time()
        status, line = run_script(trial_command(args, run_dir, flags),
                                  os.path.join(args.study_dir, "logs", name))
        if status in STOPPED:
            raise TrialStopped(f"exit {status}")
        if status != 0:
            trial.set_user_attr("error", f"exit {status}: {line}" if line else f"exit {status}")
            raise TrialFailed(trial.user_attrs["error"])
        try:
            value = float(RunReader(run_dir).read_state()["best_val_accuracy"])
        except (OSError, TinynetError, KeyError, TypeError, ValueError):
            trial.set_user_attr("error", f"no best_val_accuracy in {run_dir}/state.json")
            raise TrialFailed(trial.user_attrs["error"]) from None
        print(f"trial {trial.number}: best val_accuracy {value:.4f} "
              f"({(time.time() - start) / 60:.1f} min)", flush=True)
        return value
    return objective


def describe_params(params):
    return ", ".join(f"{label} {params[key]:.4g}" if isinstance(params[key], float)
                     else f"{label} {params[key]}" for key, label in PARAMS if key in params)


def counts(study, optuna):
    states = [t.state for t in study.get_trials(deepcopy=False)]
    S = optuna.trial.TrialState
    return {s: states.count(s) for s in (S.COMPLETE, S.RUNNING, S.WAITING, S.FAIL)}, len(states)


def trial_number(study, number):
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def requeue(args, study, optuna, number, stream):
    """Queues a FAIL trial that was stopped, not failed (no "error"), again: same parameters,
    same run directory. Returns whether it did."""
    trials = study.get_trials(deepcopy=False)
    trial = next(t for t in trials if t.number == number)
    if trial.state != optuna.trial.TrialState.FAIL or "error" in trial.user_attrs or any(
            t.system_attrs.get("retry_history", [None])[-1] == number for t in trials):
        return False  # failed for good, or re-queued already
    optuna.storages.RetryHeartbeatStaleTrialCallback()(study, trial)
    print(f"trial {trial.number} stopped and re-queued: its retry resumes "
          f"{run_dir_of(args, trial.user_attrs)}", file=stream, flush=True)
    return True


def run_search(args):
    optuna = _import_optuna()
    if args.storage:  # its own database: checked before the study folder is made
        study = open_study(args, optuna)
        prepare_study_dir(args.study_dir)
    else:  # the default database lives in the study folder
        prepare_study_dir(args.study_dir)
        study = open_study(args, optuna)
    S = optuna.trial.TrialState
    failed_in_a_row, waiting_said = 0, False
    while True:
        optuna.storages.fail_stale_trials(study)  # re-queues the trials of dead processes
        n, total = counts(study, optuna)
        if n[S.COMPLETE] >= args.trials:
            break
        if n[S.COMPLETE] + n[S.RUNNING] >= args.trials:
            if not waiting_said:
                print(f"waiting for {n[S.RUNNING]} running trial(s): another process's, or a "
                      f"dead one's, re-queued here once its heartbeat is {2 * args.heartbeat} "
                      f"s old", flush=True)
                waiting_said = True
            time.sleep(min(args.heartbeat, 10))
            continue
        waiting_said = False
        study.sampler = sampler(optuna, args.seed, total)
        ran = {}
        try:
            study.optimize(make_objective(args, ran), n_trials=1,
                           catch=(TrialFailed, TrialStopped))
        except KeyboardInterrupt:
            if "number" in ran:
                requeue(args, study, optuna, ran["number"], sys.stderr)
            write_results(args, study, optuna)
            raise
        trial = trial_number(study, ran["number"])
        if trial.state == S.FAIL:
            failed_in_a_row += 1  # (a run stopped by a signal again and again counts too)
            error = trial.user_attrs.get("error")
            if not requeue(args, study, optuna, trial.number, sys.stdout):
                print(f"trial {trial.number} FAILED ({error}); log "
                      f"{os.path.join(args.study_dir, 'logs', trial.user_attrs['run_dir'])}.err",
                      flush=True)
            if failed_in_a_row >= args.max_failures:
                write_results(args, study, optuna)
                raise TinynetError(f"{failed_in_a_row} trials in a row failed, the last with: "
                                   f"{error or 'its run stopped by a signal'}")
        else:
            failed_in_a_row = 0
        write_results(args, study, optuna, quiet=True)
    write_results(args, study, optuna)
    return study


# -- results ---------------------------------------------------------------------------------
def protocol_values(run_dir):
    """The weight decays and batch sizes the run's resolved protocol trained with."""
    try:
        protocol = RunReader(run_dir).read_config()["protocol"]
    except (OSError, TinynetError, KeyError, TypeError):
        return None, None
    specs = [s["optimizer"] for s in protocol["stages"] if s.get("optimizer")]
    if not protocol["stages"][0].get("optimizer"):
        specs.insert(0, protocol["optimizer"])
    decays = sorted({s.get("weight_decay") for s in specs} - {None})
    sizes = sorted({s["batch_size"] for s in protocol["stages"]})
    return ("/".join(f"{d:g}" for d in decays) or "none"), "/".join(map(str, sizes))


def summary(args, trials, optuna):
    S = optuna.trial.TrialState
    done = [t for t in trials if t.state == S.COMPLETE]
    if not done:
        return "no trial has finished yet"
    best = max(done, key=lambda t: (t.value, -t.number))
    lines = [f"best: trial {best.number}, best val_accuracy {best.value:.4f} "
             f"({describe_params(best.params) or 'no override'})"]
    default = next((t for t in done if t.user_attrs.get("default")), None)
    if default is None:
        lines.append("the default configuration has not finished yet")
    elif default.number == best.number:
        lines.append("the default configuration is the best so far")
    else:
        gain = best.value - default.value
        relative = f"{gain / default.value:+.1%}" if default.value else "n/a"
        lines.append(f"default (trial {default.number}): {default.value:.4f}; best - default: "
                     f"{gain:+.4f} absolute, {relative} relative")
    return "\n".join(lines)


def _markdown_table():
    """``tinynet.evaluation.tables.markdown_table``, imported without TensorFlow's start-up log
    lines (tinynet.evaluation imports it); the trials' runs keep the environment as it was."""
    saved = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from tinynet.evaluation.tables import markdown_table
    finally:
        if saved is None:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return markdown_table


def results_table(args, trials, optuna):
    markdown_table = _markdown_table()
    S = optuna.trial.TrialState
    keys = ["lr_scale"] + [k for k, on in (("weight_decay", args.wd_range),
                                           ("batch_size", args.batch_sizes),
                                           ("head_fraction", args.head_fraction_range)) if on]
    labels = dict(PARAMS)
    retried_as = {t.system_attrs["retry_history"][-1]: t.number for t in trials
                  if t.system_attrs.get("retry_history")}
    rows = []
    for t in trials:
        default = t.user_attrs.get("default", False)
        run_dir = run_dir_of(args, t.user_attrs) if "run_dir" in t.user_attrs else ""
        own = protocol_values(run_dir) if default and run_dir else (None, None)
        cells = []
        for key in keys:
            if key in t.params:
                value = t.params[key]
                cells.append(f"{value:.4g}" if isinstance(value, float) else str(value))
            elif default:
                cells.append({"lr_scale": "1", "weight_decay": f"protocol ({own[0]})",
                              "batch_size": f"protocol ({own[1]})",
                              "head_fraction": "one phase"}[key].replace(" (None)", ""))
            else:
                cells.append("")
        notes = (["default"] if default else [])
        if t.system_attrs.get("failed_trial") is not None:
            notes.append(f"retry of {t.system_attrs['failed_trial']}")
        if t.number in retried_as:
            notes.append(f"re-queued as {retried_as[t.number]}")
        if t.state == S.FAIL and "error" in t.user_attrs:
            notes.append(t.user_attrs["error"].replace("|", "/"))
        value = f"{t.value:.4f}" if t.state == S.COMPLETE else ""
        rows.append([t.number, t.state.name, *cells, value, run_dir, "; ".join(notes)])
    return markdown_table(["trial", "state", *(labels[k] for k in keys), "best val_accuracy",
                           "run dir", "note"], rows)


def plot(args, trials, optuna, path):
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.add_subplot()
    if done:
        numbers = [t.number for t in done]
        values = [t.value for t in done]
        best = [max(values[:i + 1]) for i in range(len(values))]
        ax.plot(numbers, values, "o", color="tab:blue", label="trial")
        ax.step(numbers, best, where="post", color="tab:orange", label="best so far")
        for t in done:
            if t.user_attrs.get("default"):
                ax.plot([t.number], [t.value], "*", color="tab:red", markersize=14,
                        label="default configuration")
    ax.set_xlabel("trial")
    ax.set_ylabel("best val_accuracy")
    ax.set_title(f"{args.name}: {len(done)} complete trials (TPE, epochs x{args.epochs_scale:g})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.margins(x=0.05, y=0.1)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    _atomic(path, lambda f: fig.savefig(f, format="png"))


def _atomic(path, write):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_results(args, study, optuna, quiet=False):
    """STUDY_DIR/trials.md and trials.png; printed unless ``quiet``."""
    trials = study.get_trials(deepcopy=False)
    table, text = results_table(args, trials, optuna), summary(args, trials, optuna)
    command = shlex.join(["python", "tools/tune.py", args.experiment, "--trials",
                          str(args.trials)] + (["--quick"] if args.quick else [])
                         + (["--", *args.passthrough] if args.passthrough else []))
    document = (f"# Hyperparameter search: {args.name}\n\n`{command}` (study "
                f"{args.study_name!r}; each trial: epochs x{args.epochs_scale:g}, seed "
                f"{args.seed}).\n\n{table}\n\n{text}\n")
    _atomic(os.path.join(args.study_dir, "trials.md"), lambda f: f.write(document.encode()))
    plot(args, trials, optuna, os.path.join(args.study_dir, "trials.png"))
    if not quiet:
        print(f"{table}\n\n{text}\nwritten: {os.path.join(args.study_dir, 'trials.md')}, "
              f"{os.path.join(args.study_dir, 'trials.png')}", flush=True)


def _interrupt_on_sigterm(signum, frame):
    raise KeyboardInterrupt  # stops the running trial's run (which checkpoints) and re-queues it


def dry_run(args):
    """``--dry-run``: the search as configured and its first trial's command (the protocol's
    own configuration), checked by the experiment's own ``--dry-run``."""
    print(f"search {args.study_name}: {args.trials} complete trials of {args.name} in "
          f"{args.study_dir}; {json.dumps(search_config(args))}", flush=True)
    command = trial_command(args, os.path.join(args.study_dir, "trial-0"), [])
    shown = command[1:] if command[1] == "-m" else [os.path.relpath(command[1])] + command[2:]
    print("first trial: " + shlex.join(["python"] + shown), flush=True)
    proc = subprocess.run(command + ["--dry-run"], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [l for l in proc.stderr.splitlines() if l.strip()]
        raise TinynetError(f"the experiment refuses the trial's command: "
                           f"{lines[-1] if lines else f'exit status {proc.returncode}'}")
    print(proc.stdout.strip().splitlines()[-1], flush=True)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.dry_run:
        return dry_run(args)
    previous = signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        return run_search(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    run_cli(main)
