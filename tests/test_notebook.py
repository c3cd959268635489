"""The Colab notebook (notebooks/tinynet_colab.ipynb) and what it calls (tinynet.notebook).

The notebook is committed without outputs; these tests check its shape (default tier) and
execute it headless with nbclient on the CPU (slow tier): Drive swapped for a local folder,
the paper's protocol for Multi-ResNet's ``--quick`` run on a CIFAR-10 archive served from a
file:// URL, and a lost session (the kernel and the run SIGKILLed inside an epoch, the local
disk wiped) followed by *Run all* again, which must finish equal to an uninterrupted run.
"""
import ast
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

from tinynet.errors import TinynetError
from tinynet.notebook import run_paper, speed_advice
from tinynet.papers import get_paper, list_papers
from tinynet.projections import SPEED_FLAGS

REPO = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "tinynet_colab.ipynb"


def read_notebook():
    import nbformat

    return nbformat.read(str(NOTEBOOK), as_version=4)


def parameters_cell(nb):
    cells = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    return cells[0]


def test_the_notebook_is_committed_valid_and_without_outputs():
    import nbformat

    nb = read_notebook()
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
            ast.parse(cell.source)  # plain Python: magics go through get_ipython()


def test_the_notebook_has_no_personal_paths_or_secrets():
    text = NOTEBOOK.read_text()
    assert not re.search(r"/home/|/Users/|C:\\\\|/root/|/work/|/tmp/", text)
    assert not re.search(r"(?i)token|api[_-]?key|password|secret", text)


def test_the_parameters_are_the_names_the_cells_read():
    nb = read_notebook()
    index = parameters_cell(nb)
    names = {t.id for t in ast.parse(nb.cells[index].source).body
             for t in getattr(t, "targets", [])}
    assert names == {"PAPER", "FLAGS", "KEEP", "LOCAL_DATA", "RUN_DIR", "CHECKPOINT_EVERY",
                     "MOUNT_DRIVE", "INSTALL", "DATA_URL", "DATA_MD5", "SHOW_TENSORBOARD"}
    later = "\n".join(c.source for c in nb.cells[index + 1:] if c.cell_type == "code")
    for name in names:
        assert re.search(rf"\b{name}\b", later), name
    assert ast.literal_eval(nb.cells[index].source.split("PAPER = ")[1].split()[0]) in \
        list_papers()


def test_a_failed_run_raises_with_its_status_and_last_line(capsys):
    with pytest.raises(TinynetError) as e:
        run_paper("no_such_paper", "--quick")
    assert "exit status 2" in str(e.value) and "unknown paper 'no_such_paper'" in str(e.value)
    assert "$ -m tinynet no_such_paper --quick" in capsys.readouterr().out


@pytest.mark.parametrize("paper", list_papers())
def test_the_speed_flags_suit_every_paper_and_name_its_projected_times(paper):
    for gpu, name in (("T4", "Tesla T4"), ("A100", "NVIDIA A100-SXM4-40GB"),
                      ("L4", "NVIDIA L4"), ("H100", "NVIDIA H100 80GB HBM3")):
        lines = speed_advice(paper, name)
        assert lines[0] == f"{name}: add {' '.join(SPEED_FLAGS[gpu])}"
        assert len(lines) > 1 and all("projected" in l and "a projection" in l
                                      for l in lines[1:])
        args = get_paper(paper).parse_args(SPEED_FLAGS[gpu])
        assert args.jit_compile and args.augment_on == "device"
    assert "no GPU" in speed_advice(paper, "")[0]  # nvidia-smi found nothing


# -- executing the notebook (slow: three kernels, two runs) -----------------------------------
FLAGS = ["--quick", "--dataset", "cifar10", "--steps-per-epoch", "4", "--deterministic"]
ARCHIVE_SPEC = dict(num_classes=10, train_per_class=60, test_per_class=20, seed=3)


def notebook_with(parameters):
    """The notebook with ``parameters`` injected after its parameters cell (as papermill
    does: the defaults stay visible, the injected cell overrides them)."""
    from nbformat.v4 import new_code_cell

    nb = read_notebook()
    lines = "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    nb.cells.insert(parameters_cell(nb) + 1, new_code_cell("# injected parameters\n" + lines))
    return nb


def client_for(nb, cwd):
    from nbclient import NotebookClient

    return NotebookClient(nb, timeout=900, kernel_name="python3",
                          resources={"metadata": {"path": str(cwd)}})


def kill_run_when(path, run_dir, client, stop):
    """SIGKILLs the run (every process whose command names ``run_dir``) and the kernel as
    soon as ``path`` exists: the session is lost."""
    while not stop.is_set() and not path.exists():
        time.sleep(0.02)
    if stop.is_set():
        return
    subprocess.run(["pkill", "-9", "-f", f"--run-dir {run_dir}"])
    client.km.provisioner.process.send_signal(signal.SIGKILL)


@pytest.fixture(scope="module")
def notebook_runs(tmp_path_factory):
    """``(reference run dir, notebook run dir, the resumed notebook)``: the run the notebook
    makes across a lost session, and the same command run once without interruption."""
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    from tinynet.data.staging import stage_dataset
    from tinynet.data.synthetic import write_synthetic_cifar_archive

    base = tmp_path_factory.mktemp("notebook")
    archive, md5 = write_synthetic_cifar_archive(str(base / "server"), "cifar10", **ARCHIVE_SPEC)
    url = pathlib.Path(archive).as_uri()
    keep, local = base / "drive", base / "local"
    run_dir = keep / "runs" / "multi_resnet_cifar"
    parameters = dict(PAPER="multi_resnet_cifar", FLAGS=FLAGS, KEEP=str(keep),
                      LOCAL_DATA=str(local), RUN_DIR=None, CHECKPOINT_EVERY="1steps",
                      MOUNT_DRIVE=False, INSTALL=None, DATA_URL=url, DATA_MD5=md5,
                      SHOW_TENSORBOARD=False)

    nb = notebook_with(parameters)
    client = client_for(nb, base)
    stop = threading.Event()
    with client.setup_kernel():
        killer = threading.Thread(target=kill_run_when, args=(
            run_dir / "checkpoints" / "ckpt-00001-s000002.npz", run_dir, client, stop))
        killer.start()
        try:
            with pytest.raises((CellExecutionError, DeadKernelError)):
                for index, cell in enumerate(nb.cells):
                    client.execute_cell(cell, index)
        finally:
            stop.set()
            killer.join()
    # lost inside the run (a loaded machine may take a few more steps before the kill lands,
    # and the oldest step checkpoints are deleted as new ones come)
    assert list((run_dir / "checkpoints").glob("ckpt-*.npz"))
    assert not (run_dir / "checkpoints" / "ckpt-00003.npz").exists()
    for item in sorted(local.rglob("*"), reverse=True):  # the session's disk is wiped
        item.rmdir() if item.is_dir() else item.unlink()

    resumed = notebook_with(parameters)
    client_for(resumed, base).execute()

    ref_local, ref_dir = base / "ref-local", base / "ref-run"
    stage_dataset("cifar10", base / "ref-keep", ref_local, url, md5)
    subprocess.run([sys.executable, "-m", "tinynet", "multi_resnet_cifar", *FLAGS,
                    "--checkpoint-every", "1steps", "--data-dir", str(ref_local), "--run-dir",
                    str(ref_dir)], check=True, capture_output=True)
    return ref_dir, run_dir, resumed


@pytest.mark.slow
def test_after_a_lost_session_run_all_finishes_the_run_equal_to_an_uninterrupted_one(
        notebook_runs):
    ref_dir, run_dir, _ = notebook_runs
    name = "ckpt-00003.npz"
    with np.load(ref_dir / "checkpoints" / name) as a, \
            np.load(run_dir / "checkpoints" / name) as b:
        keys = [k for k in a.files if k != "meta"]
        assert len(keys) > 20 and set(keys) == set(b.files) - {"meta"}
        for k in keys:
            np.testing.assert_array_equal(b[k], a[k], err_msg=k)
    history = [pd.read_csv(d / "history.csv").drop(columns="seconds") for d in (run_dir,
                                                                                 ref_dir)]
    pd.testing.assert_frame_equal(*history)
    assert len(history[0]) == 3
    assert (run_dir / "lr.csv").read_text() == (ref_dir / "lr.csv").read_text()


@pytest.mark.slow
def test_the_resumed_notebook_says_what_it_did_and_reports_the_paper_beside_the_run(
        notebook_runs):
    _, run_dir, nb = notebook_runs
    text = {i: "".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", ""))
                       for o in c.get("outputs", [])) for i, c in enumerate(nb.cells)}
    joined = "\n".join(text.values())
    assert f"multi_resnet_cifar on cifar10; run directory {run_dir}" in joined
    assert "no GPU" in joined
    assert "copying" in joined and "downloading" not in joined  # the kept archive, once
    assert "resum" in joined.lower()
    report = text[len(nb.cells) - 1]
    assert "Multi-ResNet" in report or "multi-resnet" in report.lower(), report[:500]
