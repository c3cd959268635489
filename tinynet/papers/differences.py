"""What keeps a run from its paper's run, computed from the resolved options.

A paper module's command line, resolved (``module.resolve(module.build_parser().parse_args(
argv))``), is the run's specification. The paper's own run is the same command with no flags,
resolved the same way, except for the options that choose *which* published figure the run
stands beside (``module.FIGURE_OPTIONS``: Multi-ResNet's block/depth/k, ResNet's variant,
DenResNet's backbone), which it takes from the run. Every option whose resolved value differs
between the two is a difference, unless it only says where or how the run executes
(``RUN_OPTIONS``, and a paper's own ``RUN_OPTIONS``: the same function is computed). A new option
is therefore a difference from the day it exists, without a list to update.

A paper module may declare, as data:

* ``FIGURE_OPTIONS``: options that select the figure (never a difference);
* ``RUN_OPTIONS``: its own options that change where or how, not what (never a difference);
* ``PAPER_VALUES``: ``{option: function(args) -> value}``, the value an option left unset (None)
  stands for, so that giving it explicitly is no difference (DenResNet's batch per backbone);
* ``NOTES``: ``{option: text}``, why the paper's value is the one the figures came from;
* ``DATASETS``: the datasets the paper reports (default: the script's own).
"""
# where and how a run executes, not what it computes (the common flags of tinynet.experiment)
RUN_OPTIONS = frozenset({
    "data_dir", "cache", "skip_corrupt", "no_download", "run_dir", "data_format", "seed",
    "deterministic", "restart", "progress_every", "verbose", "dry_run", "checkpoint_every",
    "backend", "jit_compile", "augment_on", "data_on_device", "strategy", "devices", "sync_bn",
    "model_parallel",
    "default_dataset", "synthetic_spec",  # (set by the parser itself, not flags)
})
# the common flags' own wording (shorter than "--flag value"); others read "--flag value"
_WORDING = {"width": "width {:g}", "epochs_scale": "epochs x{:g}",
            "steps_per_epoch": "{} steps per epoch", "lr_scale": "lr x{:g}",
            "weight_decay": "weight decay {:g}", "batch_size": "batch {}"}
# options that mean something only on Tiny ImageNet (resizing, imgaug's recipes)
_TINY_IMAGENET_ONLY = frozenset({"interpolation", "augment_backend"})


def paper_args(module, args, figure_options=None):
    """The paper's own run beside ``args``: ``module``'s defaults, resolved, with the
    figure-choosing options (default the module's ``FIGURE_OPTIONS``) taken from ``args``."""
    raw = module.build_parser().parse_args([])
    for option in _figure_options(module, figure_options):
        setattr(raw, option, getattr(args, option))
    return module.resolve(raw)


def _figure_options(module, override):
    return set(getattr(module, "FIGURE_OPTIONS", ()) if override is None else override)


def differences(paper, args, figure_options=None):
    """The differences of the run with resolved options ``args`` from the paper's run
    (``paper``: a name of ``tinynet.papers`` or its module), as one-line texts: generated
    data and --quick first, then each option in the parser's order. ``figure_options``
    overrides the module's (a sweep's own optimizer and epochs)."""
    from tinynet.papers import get_paper

    module = get_paper(paper) if isinstance(paper, str) else paper
    figure = _figure_options(module, figure_options)
    theirs = paper_args(module, args, figure)
    out = _dataset_differences(module, args)
    if getattr(args, "quick", False):
        out.append("--quick")
    skip = RUN_OPTIONS | set(getattr(module, "RUN_OPTIONS", ())) | figure | {
        "dataset", "quick"}
    dataset = getattr(args, "dataset", "") or ""
    for option, ours in vars(args).items():
        if option in skip or (option in _TINY_IMAGENET_ONLY and "tiny-imagenet" not in dataset):
            continue
        paper_value = _paper_value(module, option, getattr(theirs, option, None), args)
        if _paper_value(module, option, ours, args) != paper_value:
            out.append(_text(option, ours, paper_value, getattr(module, "NOTES", {}),
                             option in getattr(module, "PAPER_VALUES", {})))
    return out


def _paper_value(module, option, value, args):
    fill = getattr(module, "PAPER_VALUES", {}).get(option)
    return fill(args) if value is None and fill is not None else value


def _dataset_differences(module, args):
    dataset = getattr(args, "dataset", "") or ""
    default = getattr(args, "default_dataset", None)
    datasets = tuple(getattr(module, "DATASETS", ()) or ((default,) if default else ()))
    if dataset.startswith("synthetic"):
        return [f"generated data ({dataset})"]
    if datasets and dataset not in datasets:
        return [f"dataset {dataset} (the paper's: {', '.join(datasets)})"]
    return []


def _text(option, ours, theirs, notes, paper_value):
    """``--flag value (the paper's: value; note)``, or a common flag's own wording (with the
    paper's value where the paper module names one)."""
    note = notes.get(option)
    if option in _WORDING and not note:
        head = _WORDING[option].format(ours)
        return f"{head} (the paper's: {theirs})" if paper_value else head
    flag = "--" + option.replace("_", "-")
    head = flag if ours is True else f"{flag} {ours}"
    paper = "not the paper's" if theirs is None or theirs is False else f"the paper's: {theirs}"
    return f"{head} ({paper}{'; ' + note if note else ''})"
