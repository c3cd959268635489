"""The papers as modules of the package (``tinynet.papers``), parametrised over the registry as
timm's tests are over its models: each holds its protocol data, figures and presets, parses
its flags without a side effect, names its protocols so that a run is matched back to it, and
runs from ``tinynet PAPER`` / ``python -m tinynet PAPER`` as from ``experiments/PAPER.py``."""
import os
import subprocess
import sys

import pytest

from tinynet.errors import TinynetError
from tinynet.evaluation.reports import figure
from tinynet.experiment import QuickPreset, run_cli
from tinynet.papers import get_paper, list_papers, paper_of_protocol
from tinynet.training.protocol import Protocol

from conftest import REPO

PAPERS = list_papers()


def protocols_of(paper):
    """Every protocol a paper's module makes with its own options (defaults and variants)."""
    module = get_paper(paper)
    if hasattr(module, "PROTOCOLS"):
        return list(module.PROTOCOLS.values())
    made = {
        "densenet_model2": lambda: [module.protocol(o) for o in module.OPTIMIZERS],
        "resnet_tiny_imagenet": lambda: [module.protocol(v) for v in module.VARIANTS],
        "cifar_resnet_design": lambda: [module.protocol(o) for o in module.OPTIMIZERS],
        "multi_resnet_cifar": lambda: [module.protocol(d) for d in module.STATISTICS],
        "denresnet": lambda: [module.protocol(b, two_phase=t) for b in module.SCHEDULE
                              for t in (False, True)],
    }
    return made[paper]()


def test_the_registry_lists_every_experiment_and_refuses_others():
    assert PAPERS == ["densenet_model1", "densenet_model2", "resnet_tiny_imagenet",
                      "cifar_resnet_design", "multi_resnet_cifar", "denresnet"]
    assert sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "experiments"))
                  if f.endswith(".py")) == sorted(PAPERS)
    with pytest.raises(TinynetError, match="unknown paper 'nope'; known: densenet_model1"):
        get_paper("nope")


@pytest.mark.parametrize("paper", PAPERS)
def test_a_paper_module_holds_its_protocol_as_data(paper):
    module = get_paper(paper)
    assert module.EXPERIMENT == paper and module.TITLE and "\n" not in module.TITLE
    assert isinstance(module.QUICK, QuickPreset) and module.CITATION
    for f in getattr(module, "FIGURES", []):
        assert figure(**f) == f  # a valid published figure (metric, value in [0, 1])
    protocols = protocols_of(paper)
    assert protocols and all(isinstance(p, Protocol) for p in protocols)
    for p in protocols:  # a run is matched back to its paper by its protocol's name
        assert p.name.startswith(module.PROTOCOL_PREFIX) and paper_of_protocol(p.name) == paper
        assert Protocol.from_dict(p.to_dict()).fingerprint() == p.fingerprint()


@pytest.mark.parametrize("paper", PAPERS)
def test_the_thin_entry_point_runs_the_papers_command_line(paper):
    with open(os.path.join(REPO, "experiments", f"{paper}.py"), encoding="utf-8") as f:
        source = f.read()
    assert f'run_paper("{paper}")' in source and len(source.splitlines()) < 15


def test_parsing_has_no_side_effect_and_fills_the_run_directory():
    """Every paper's flags parse without starting Keras or TensorFlow or making a device
    (``set_up`` does, in main); --quick and paper-scale runs get their own folders."""
    code = ("import sys\nfrom tinynet.papers import get_paper, list_papers\n"
            "for n in list_papers():\n"
            "    m = get_paper(n)\n"
            "    print(n, m.parse_args(['--quick']).run_dir, m.parse_args([]).run_dir)\n"
            "print('started', 'tensorflow' in sys.modules or 'keras' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.splitlines()
    assert out[-1] == "started False", out
    dirs = {line.split()[0]: line.split()[1:] for line in out[:-1]}
    for paper in PAPERS:
        name = "denresnet-resnet101" if paper == "denresnet" else paper
        quick = "denresnet-resnet18" if paper == "denresnet" else paper
        assert dirs[paper] == [f"runs/{quick}-quick", f"runs/{name}"]


def test_the_tinynet_command_lists_and_refuses_in_one_line(capsys):
    from tinynet.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--list"])
    assert exit_info.value.code == 0
    listed = capsys.readouterr().out
    assert all(f"  {paper} " in listed for paper in PAPERS)
    with pytest.raises(SystemExit) as exit_info:
        main(["no_such_paper", "--quick"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "tinynet: error: unknown paper 'no_such_paper'; known: " + ", ".join(PAPERS))
    with pytest.raises(SystemExit) as exit_info:
        main(["multi_resnet_cifar", "--epochs", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tinynet multi_resnet_cifar: error: argument --epochs") and (
        "\n" not in err)


def test_a_paper_refuses_in_one_line_before_anything_is_written(tmp_path, capsys):
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(get_paper("denresnet").main, ["--quick", "--weights", str(tmp_path / "no.h5"),
                                              "--run-dir", str(run_dir)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: --weights {tmp_path / 'no.h5'}: no such")
    assert not run_dir.exists()
