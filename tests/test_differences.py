"""Differences from the paper (tinynet.papers.differences) are computed from the resolved
options, for every paper of the registry: the paper's own command has none, every option that
changes what is trained is one (a new option too, with no list to update), and the options
that only say where or how a run executes, or which figure it stands beside, are not."""
import pytest

from tinynet.papers import get_paper, list_papers
from tinynet.papers.differences import RUN_OPTIONS, differences, paper_args

# for each paper: flags that change what it trains, each with the text it must give
CHANGES = {
    "densenet_model1": [(["--stages", "64"], "--stages 64 (the paper's: progressive; 64 trains")],
    "densenet_model2": [(["--optimizer", "adam"], "--optimizer adam (the paper's: rmsprop; ")],
    "resnet_tiny_imagenet": [(["--depth", "18"], "--depth 18 (the paper's: 34; "),
                             (["--block", "b"], "--block b (the paper's: e; "),
                             (["--stem", "imagenet"], "--stem imagenet (the paper's: tiny)")],
    "cifar_resnet_design": [(["--no-mixup"], "--no-mixup (not the paper's; the figures are "),
                            (["--schedule", "sgdr"], "--schedule sgdr (the paper's: code; "),
                            (["--epochs", "60"], "--epochs 60 (the paper's: 200)"),
                            (["--val-split", "100"], "--val-split 100 (the paper's: 5000)")],
    "multi_resnet_cifar": [(["--epochs", "200"], "--epochs 200 (the paper's: 164; "),
                           (["--val-split", "1000"],
                            "--val-split 1000 (the paper's: 0; the paper selects"),
                           (["--block", "basic", "--depth", "56", "--shortcut", "B"],
                            "--shortcut B (the paper's: A; ")],
    "denresnet": [(["--two-phase"], "--two-phase (not the paper's)"),
                  (["--dropout", "0.5"], "--dropout 0.5 (the paper's: 0.0)"),
                  (["--plateau-patience", "4"], "--plateau-patience 4 (the paper's: 2)"),
                  (["--image-size", "128"], "--image-size 128 (the paper's: 224; "),
                  (["--backbone", "resnet50", "--batch-size", "32"],
                   "batch 32 (the paper's: 64)")],
}
COMMON = [(["--lr-scale", "2"], "lr x2"), (["--weight-decay", "0.001"], "weight decay 0.001"),
          (["--epochs-scale", "0.5"], "epochs x0.5"), (["--steps-per-epoch", "7"],
                                                       "7 steps per epoch"),
          (["--precision", "mixed_bfloat16"], "--precision mixed_bfloat16 (the paper's: float32)")]
# where and how it runs: never a difference
NEUTRAL = ["--seed", "5", "--deterministic", "--checkpoint-every", "90s", "--jit-compile", "off",
           "--progress-every", "0", "--run-dir", "elsewhere", "--data-dir", "data2", "--restart"]


def test_every_paper_is_covered():
    assert sorted(CHANGES) == sorted(list_papers())


@pytest.mark.parametrize("name", list_papers())
def test_the_papers_own_command_has_none_and_where_it_runs_is_none(name):
    paper = get_paper(name)
    assert differences(name, paper.parse_args([])) == []
    assert differences(name, paper.parse_args(NEUTRAL)) == []


@pytest.mark.parametrize("name", list_papers())
def test_every_option_that_changes_the_run_is_one(name):
    paper = get_paper(name)
    for flags, text in CHANGES[name] + COMMON:
        found = differences(name, paper.parse_args(flags))
        assert len(found) == 1 and found[0].startswith(text), (flags, found)


@pytest.mark.parametrize("name", list_papers())
def test_quick_lists_generated_data_and_itself_first(name):
    found = differences(name, get_paper(name).parse_args(["--quick"]))
    assert found[0].startswith("generated data (synthetic-") and found[1] == "--quick"
    assert any(d.startswith("epochs x") for d in found)


def test_quick_of_model1_in_full():
    assert differences("densenet_model1", get_paper("densenet_model1").parse_args(["--quick"])) == [
        "generated data (synthetic-tiny-imagenet)", "--quick", "epochs x0.05",
        "12 steps per epoch", "width 0.125"]


def test_an_option_added_to_a_paper_is_a_difference_without_a_list(monkeypatch):
    paper = get_paper("densenet_model1")
    build = paper.build_parser

    def with_new_option():
        parser = build()
        parser.add_argument("--label-smoothing", type=float, default=0.0)
        return parser

    monkeypatch.setattr(paper, "build_parser", with_new_option)
    args = paper.resolve(paper.build_parser().parse_args(["--label-smoothing", "0.1"]))
    assert differences(paper, args) == ["--label-smoothing 0.1 (the paper's: 0.0)"]


def test_figure_options_choose_the_figure_instead():
    multi = get_paper("multi_resnet_cifar")
    args = multi.parse_args(["--block", "bottleneck", "--depth", "56", "--k", "2",
                             "--dataset", "cifar100", "--shortcut", "B", "--val-split", "0"])
    assert differences(multi, args) == []
    assert paper_args(multi, args).depth == 56
    assert differences("resnet_tiny_imagenet", get_paper("resnet_tiny_imagenet").parse_args(
        ["--variant", "improved", "--batch-norm", "keras"])) == []
    den = get_paper("denresnet")  # the paper's own batch, given explicitly
    assert differences(den, den.parse_args(["--backbone", "resnet50", "--batch-size", "64",
                                            "--ten-crop", "--crop-size", "48"])) == []
    cifar = get_paper("cifar_resnet_design")  # a sweep's run beside its optimizer's figure
    args = cifar.parse_args(["--optimizer", "adam", "--epochs", "60"])
    assert differences(cifar, args, cifar.FIGURE_OPTIONS + ("optimizer", "epochs")) == []
    assert len(differences(cifar, args)) == 2


def test_tiny_imagenet_only_options_and_other_datasets():
    model1 = get_paper("densenet_model1")
    assert differences(model1, model1.parse_args(["--interpolation", "bilinear"])) == [
        "--interpolation bilinear (the paper's: nearest)"]
    multi = get_paper("multi_resnet_cifar")  # no resizing on CIFAR: the flag is no difference
    assert differences(multi, multi.parse_args(["--interpolation", "bilinear"])) == []
    assert differences(model1, model1.parse_args(["--dataset", "cifar10"])) == [
        "dataset cifar10 (the paper's: tiny-imagenet)"]


def test_run_options_are_the_common_flags_that_do_not_change_the_function():
    assert {"seed", "run_dir", "strategy", "deterministic", "data_format"} <= RUN_OPTIONS
    assert not {"width", "batch_size", "lr_scale", "precision", "interpolation"} & RUN_OPTIONS
