"""Paper vs ours: the figures a paper reports beside the figures a run directory holds.

Each paper (``tinynet.papers``) passes ``paper=paper_record(...)`` to ``run_experiment``; the runner
records it in config.json as::

    "paper": {"citation": "Abai & Rajmalwar 2019, ...",
              "figures": [{"what": "Model 1, top-1 validation accuracy",
                           "metric": "val_accuracy", "value": 0.595, "comparable": false,
                           "at": "best", "note": "..."}],
              "differences": ["generated data (synthetic-tiny-imagenet)", "--quick", ...]}

``metric`` is one of ``METRICS`` (accuracies and errors as fractions in [0, 1]); ``at`` (optional,
default "best") says which of our figures it stands beside: the best epoch's (the best
checkpoint's) or the final epoch's; ``view`` (optional) an evaluation view such as
"ten_crop". ``comparable`` is whether this run is the configuration the figure is for *and* its
protocol has no differences (``paper_record`` sets it false whenever ``differences`` is not
empty). ``ours(run_dir)`` reads our figures from the run's files (history.csv, state.json,
test_errors.json, test_metrics.json, evaluation.json); ``report_markdown(run_dirs)`` writes the
docs-ready comparison ``tools/report.py`` prints.

Runs made before the paper entry was recorded (tinynet 0.3) are matched to their paper by the
protocol name (``tinynet.papers.paper_of_protocol``) and get its ``CITATION`` and ``FIGURES``,
all marked not comparable: which configuration they are for was not recorded.

Nothing here needs TensorFlow: the run directory is read through ``tinynet.run_reader`` (the
standard library; ``gs://`` paths through ``tinynet.io``), and the parameter count comes from
the shapes in the saved model's weights file (h5py), without building the model.
"""
import math
import shlex

from tinynet.errors import TinynetError
from tinynet.run_reader import RunReader

METRICS = tuple(f"{split}_{kind}" for split in ("val", "test", "train")
                for kind in ("accuracy", "error", "top5_accuracy", "top5_error"))
AT = ("best", "final")
NOT_RECORDED = "not recorded: a run made before tinynet 0.3 recorded its paper's figures"
_SOURCE_ORDER = {"evaluation.json": 0, "test_errors.json": 1, "test_metrics.json": 1,
                 "history.csv": 2}


# -- the paper's side ---------------------------------------------------------------------------
def figure(what, metric, value, comparable=False, note=None, at=None, view=None):
    """One published figure as ``paper_record`` records it (see the module docstring)."""
    if metric not in METRICS:
        raise ValueError(f"figure {what!r}: metric {metric!r} is not one of {', '.join(METRICS)}")
    value = float(value)
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise ValueError(f"figure {what!r}: value {value} is not a fraction in [0, 1]")
    if not isinstance(comparable, bool):
        raise ValueError(f"figure {what!r}: comparable must be True or False, got {comparable!r}")
    if at is not None and at not in AT:
        raise ValueError(f"figure {what!r}: at must be one of {AT}, got {at!r}")
    record = {"what": str(what), "metric": metric, "value": value, "comparable": comparable}
    for key, item in (("at", at), ("view", view), ("note", note)):
        if item is not None:
            record[key] = str(item)
    return record


def paper_record(citation, figures, differences=()):
    """The JSON-serialisable ``paper`` entry of config.json: ``citation``; ``figures``, dicts
    with ``what``, ``metric``, ``value``, ``comparable`` and optionally ``note``, ``at``,
    ``view`` (``figure``'s arguments); ``differences``, what keeps this run from the paper's
    protocol. A figure is comparable only if its configuration is this run's and there are no
    differences."""
    differences = [str(d) for d in differences]
    out = []
    for f in figures:
        f = dict(f)
        unknown = set(f) - {"what", "metric", "value", "comparable", "note", "at", "view"}
        if unknown:
            raise ValueError(f"figure {f.get('what')!r}: unknown keys {sorted(unknown)}")
        missing = {"what", "metric", "value", "comparable"} - set(f)
        if missing:
            raise ValueError(f"figure {f.get('what')!r}: missing {sorted(missing)}")
        record = figure(**f)
        record["comparable"] = record["comparable"] and not differences
        out.append(record)
    return {"citation": str(citation), "figures": out, "differences": differences}


# -- reading a run directory (TF-free: tinynet.run_reader) ------------------------------------
def is_run_dir(path):
    return RunReader(path).has_config()


def _our(out, metric, at, value, source, view=None, epoch=None, note=None):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return
    entry = {"metric": metric, "at": at, "value": float(value), "source": source}
    for key, item in (("view", view), ("epoch", epoch), ("note", note)):
        if item is not None:
            entry[key] = item
    out.append(entry)


def _metrics_dict(out, prefix, metrics, at, source, view=None):
    """Figures from a ``tinynet.evaluation.metrics`` dict (top1/top5 accuracy, top1 error)."""
    top1 = metrics.get("top1_accuracy")
    if top1 is None and metrics.get("top1_error") is not None:
        top1 = 1 - metrics["top1_error"]
    _our(out, f"{prefix}_accuracy", at, top1, source, view)
    _our(out, f"{prefix}_top5_accuracy", at, metrics.get("top5_accuracy"), source, view)


def _with_complements(figures):
    """Adds the error of every accuracy and the accuracy of every error."""
    have = {(f["metric"], f["at"], f.get("view"), f["source"]) for f in figures}
    out = list(figures)
    for f in figures:
        m = f["metric"]
        other = (m[:-len("accuracy")] + "error" if m.endswith("accuracy")
                 else m[:-len("error")] + "accuracy")
        if (other, f["at"], f.get("view"), f["source"]) not in have:
            out.append(dict(f, metric=other, value=1 - f["value"], derived=True))
    return out


def ours(run_dir):
    """Our figures of the run in ``run_dir``, from its files: best and final validation
    top-1/top-5 and training accuracy (history.csv), epochs done and status (state.json),
    test errors (test_errors.json, test_metrics.json) and evaluations (evaluation.json), each
    accuracy also as an error. Returns a dict: ``config``, ``state``, ``figures`` (dicts
    with ``metric``, ``at``, ``value``, ``source`` and optionally ``view``, ``epoch``,
    ``note``, ``derived``), ``best_epoch``, ``completed_epochs``, ``total_epochs``,
    ``status``, ``training_seconds``, ``parameters``, ``parameters_from``."""
    run_dir = str(run_dir)
    reader = RunReader(run_dir)
    if not reader.has_config():
        raise TinynetError(f"{reader.file('config.json')} is missing: not a run directory")
    config = reader.read_config()
    state = reader.read_json("state.json", required=False) or {}
    rows = reader.history_rows()
    history = [r for r in rows if r.get("val_accuracy") is not None]
    figures = []
    best_epoch = last_epoch = None
    if history:
        last_epoch = int(history[-1].get("global_epoch") or len(history))
        best = max(range(len(history)), key=lambda i: (history[i]["val_accuracy"], -i))
        best_epoch = int(history[best].get("global_epoch") or best + 1)
        for at, row in (("best", history[best]), ("final", history[-1])):
            epoch = int(row.get("global_epoch") or 0) or None
            _our(figures, "val_accuracy", at, row["val_accuracy"], "history.csv", epoch=epoch)
            _our(figures, "val_top5_accuracy", at, row.get("val_top5"), "history.csv",
                 epoch=epoch)
            _our(figures, "train_accuracy", at, row.get("accuracy"), "history.csv", epoch=epoch)
    errors = reader.read_json("test_errors.json", required=False) or {}
    for key, at, note in (("best_over_epochs_test_error", "best",
                           "best over epochs, selected on the test set"),
                          ("best_validation_model_test_error", "best", "best-validation model"),
                          ("final_epoch_test_error", "final", None)):
        _our(figures, "test_error", at, errors.get(key), "test_errors.json", note=note,
             epoch=errors.get("best_epoch") if key.startswith("best_over") else None)
    test = reader.read_json("test_metrics.json", required=False) or {}
    for key, at in (("best_checkpoint", "best"), ("final", "final")):
        if isinstance(test.get(key), dict):
            _metrics_dict(figures, "test", test[key], at, "test_metrics.json")
    evaluation = reader.read_json("evaluation.json", required=False) or {}
    model = evaluation.get("model") if evaluation.get("model") in AT else "best"
    for key, metrics in evaluation.items():
        split, _, view = key.partition("_")
        if isinstance(metrics, dict) and split in ("val", "test", "train") and (
                "top1_accuracy" in metrics or "top1_error" in metrics):
            _metrics_dict(figures, split, metrics, model, "evaluation.json", view or None)
    seconds = [r.get("seconds") for r in rows]
    parameters, parameters_from = reader.parameter_count()
    return {"run_dir": run_dir, "config": config, "state": state,
            "figures": _with_complements(figures), "best_epoch": best_epoch,
            "last_epoch": last_epoch,
            "completed_epochs": state.get("completed_epochs", len(history)),
            "total_epochs": state.get("total_epochs"), "status": state.get("status"),
            "training_seconds": sum(s for s in seconds if isinstance(s, float)) or None,
            "parameters": parameters, "parameters_from": parameters_from}


def match(paper_figure, our_figures):
    """Our figure beside ``paper_figure``: the same metric, ``at`` (default best) and view;
    an explicit evaluation before a test file before the history. None when we have none."""
    at, view = paper_figure.get("at") or "best", paper_figure.get("view")
    candidates = [f for f in our_figures if f["metric"] == paper_figure["metric"]
                  and f["at"] == at and f.get("view") == view]
    candidates.sort(key=lambda f: (_SOURCE_ORDER.get(f["source"], 3), bool(f.get("derived"))))
    return candidates[0] if candidates else None


# -- runs made before the paper entry ----------------------------------------------------------
def fallback_paper(config):
    """The ``paper`` entry of a run that did not record one: the ``CITATION`` and ``FIGURES``
    of the paper whose protocols carry its protocol's name (``tinynet.papers.paper_of_protocol``),
    none comparable; None when no paper matches or it carries no figures."""
    from tinynet.papers import get_paper, paper_of_protocol

    name = paper_of_protocol((config.get("protocol") or {}).get("name"))
    if name is None:
        return None
    module = get_paper(name)
    differences = [f"{NOT_RECORDED}; figures from tinynet.papers.{name} by the protocol "
                   f"name, which of them is this run's configuration is unknown"]
    dataset = (config.get("dataset_spec") or {}).get("name") or ""
    if dataset.startswith("synthetic"):
        differences.append(f"generated data ({dataset})")
    width = (config.get("model_kwargs") or {}).get("width")
    if width not in (None, 1, 1.0):
        differences.append(f"width {width:g}")
    return paper_record(module.CITATION, [dict(f, comparable=False) for f in module.FIGURES],
                        differences)


# -- markdown ------------------------------------------------------------------------------------
def percent(value):
    return "n/a" if value is None else f"{100 * value:.2f}%"


def describe_metric(metric, at=None, view=None):
    """``"val_top5_error", "final"`` -> ``"validation top-5 error (final)"``."""
    split, _, kind = metric.partition("_")
    split = {"val": "validation", "test": "test", "train": "training"}[split]
    kind = {"accuracy": "top-1 accuracy", "error": "top-1 error", "top5_accuracy":
            "top-5 accuracy", "top5_error": "top-5 error"}[kind]
    if split == "training":
        kind = kind.replace("top-1 ", "")
    qualifier = [q for q in (at or "best", view and view.replace("_", "-")) if q]
    return f"{split} {kind} ({', '.join(qualifier)})"


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header, rows):
    from tinynet.evaluation.tables import markdown_table

    return markdown_table(header, [[_cell(c) for c in row] for row in rows])


def _duration(seconds):
    if not seconds:
        return None
    hours, rest = divmod(int(round(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _command(command):
    if not command:
        return None
    argv = [str(a) for a in command]
    prefix = ["python"] if argv[0].endswith(".py") or argv[0] == "-m" else []
    return " ".join(shlex.quote(a) for a in prefix + argv)


def _our_text(f):
    if f is None:
        return "n/a"
    extra = [x for x in (f.get("epoch") and f"epoch {f['epoch']}", f.get("note")) if x]
    return percent(f["value"]) + (f" ({', '.join(extra)})" if extra else "")


def _same(best, final):
    """Whether the final epoch's figure is the best epoch's (then the report shows it once)."""
    return (best is not None and best["value"] == final["value"]
            and best.get("epoch") == final.get("epoch") and best.get("epoch") is not None)


def _comparable_text(fig, differences):
    if fig["comparable"]:
        return "yes"
    reasons = [r for r in (fig.get("note"), differences and "the protocol differs (below)") if r]
    return "no" + (f": {'; '.join(reasons)}" if reasons else "")


def _hardware(config):
    devices = [str(d).replace("/physical_device:", "") for d in config.get("devices") or []]
    dist = config.get("distribution") or {}
    parts = [f"host {config.get('host') or 'not recorded'}",
             "devices " + (", ".join(devices) if devices else "not recorded")]
    if dist:
        strategy = dist.get("strategy") or "?"
        replicas = dist.get("replicas")
        text = f"{strategy}" + (f", {replicas} replica{'s' if replicas != 1 else ''}"
                                if replicas else "")
        if dist.get("devices"):
            text += f" on {', '.join(dist['devices'])}"
        if dist.get("model_parallel"):
            text += f"; model parallel over {', '.join(dist['model_parallel'])}"
        parts.append(f"distribution {text}")
    return "; ".join(parts)


def run_section(run_dir, heading_level=2):
    """The markdown section of one run: paper figures beside ours, differences, hardware, date,
    model, command. Returns ``(markdown, summary rows)``."""
    info = ours(run_dir)
    config, state = info["config"], info["state"]
    paper = config.get("paper")
    recorded = paper is not None
    if recorded and not (isinstance(paper, dict) and isinstance(paper.get("citation"), str)
                         and isinstance(paper.get("figures"), list)
                         and all(isinstance(f, dict) for f in paper["figures"])
                         and isinstance(paper.get("differences", []), list)):
        raise TinynetError(f"{run_dir}/config.json: its paper record is malformed (expected "
                           f"citation, figures, differences as tinynet.evaluation.reports."
                           f"paper_record writes them)")
    if not recorded:
        paper = fallback_paper(config)
    protocol = (config.get("protocol") or {}).get("name", "?")
    lines = [f"{'#' * heading_level} `{run_dir}`", ""]
    if paper:
        lines += [f"**Paper:** {paper['citation']}" + (
            "" if recorded else " (not recorded in the run: matched by its protocol name)"), ""]
    summary = []
    if paper and paper["figures"]:
        rows = []
        for fig in paper["figures"]:
            ours_fig = match(fig, info["figures"])
            comparable = _comparable_text(fig, paper["differences"])
            rows.append([fig["what"], describe_metric(fig["metric"], fig.get("at"),
                                                      fig.get("view")),
                         percent(fig["value"]), _our_text(ours_fig), comparable])
            summary.append([f"`{run_dir}`", fig["what"], percent(fig["value"]),
                            percent(ours_fig and ours_fig["value"]),
                            "yes" if fig["comparable"] else "no"])
        lines += [_table(["paper figure", "metric", "paper", "ours", "comparable"], rows), ""]
    elif paper:
        lines += ["The paper reports no figure for this configuration.", ""]
    else:
        lines += [f"Paper figures not recorded (run made before tinynet 0.3; protocol "
                  f"{protocol!r} matches no experiment).", ""]
        summary.append([f"`{run_dir}`", "paper figures not recorded", "n/a", "n/a", "no"])
    own = [f for f in info["figures"] if not f.get("derived")]
    best = {(f["metric"], f.get("view"), f["source"]): f for f in own if f["at"] == "best"}
    own = [f for f in own if f["at"] != "final" or not _same(
        best.get((f["metric"], f.get("view"), f["source"])), f)]
    if own:
        lines += ["**Ours:** " + "; ".join(
            f"{describe_metric(f['metric'], f['at'], f.get('view'))} {_our_text(f)}"
            for f in own) + ("" if info["best_epoch"] != info["last_epoch"] else
                             " (the best epoch is the last)") + ".", ""]
    else:
        lines += ["**Ours:** no finished epoch yet.", ""]
    differences = (paper or {}).get("differences") or []
    lines += ["**Differences from the paper's protocol:** "
              + ("; ".join(differences) + "." if differences else
                 ("none." if paper else "not recorded.")), ""]
    kwargs = config.get("model_kwargs") or {}
    model = f"`{config.get('model', '?')}`" + (
        f" ({', '.join(f'{k}={v}' for k, v in kwargs.items())})" if kwargs else "")
    if info["parameters"]:
        model += f", {info['parameters']:,} parameters"
    epochs = f"{info['completed_epochs']}/{info['total_epochs'] or '?'} epochs"
    status = info["status"] or "no state.json"
    versions = config.get("versions") or {}
    software = ", ".join(f"{k} {versions[k]}" for k in ("tinynet", "tensorflow", "keras")
                         if k in versions)
    commit = config.get("git_commit")
    facts = [
        ("Model", model),
        ("Protocol", f"`{protocol}`, {status}, {epochs}"
         + (f", best validation accuracy at epoch {info['best_epoch']}"
            if info["best_epoch"] else "")),
        ("Dataset", (config.get("dataset") or {}).get("name")
         or (config.get("dataset_spec") or {}).get("name") or "not recorded"),
        ("Hardware", _hardware(config)),
        ("Training time", _duration(info["training_seconds"])),
        ("Date", f"started {config.get('created') or 'not recorded'}, last update "
                 f"{state.get('updated') or 'not recorded'}"),
        ("Software", software + (f", commit {commit[:12]}" if commit else "")),
        ("Command", _command(config.get("command")) and f"`{_command(config.get('command'))}`"),
    ]
    lines += [f"- {name}: {value}" for name, value in facts if value]
    return "\n".join(lines) + "\n", summary


def report_markdown(run_dirs, title="Paper vs ours"):
    """Docs-ready markdown for ``run_dirs``: a summary table of every paper figure beside ours,
    then one section per run (``run_section``)."""
    run_dirs = [str(r) for r in run_dirs]
    sections, summary = [], []
    for run_dir in run_dirs:
        text, rows = run_section(run_dir)
        sections.append(text)
        summary += rows
    head = [f"# {title}", ""]
    if len(run_dirs) > 1 and summary:
        head += [_table(["run", "paper figure", "paper", "ours", "comparable"], summary), ""]
    return "\n".join(head) + "\n" + "\n".join(sections)
