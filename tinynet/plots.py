"""Training curves with stage boundaries marked, like Figs. 3 and 4 of seed 002.

Each stage start is a dashed line with the stage's number at the top of both panels; a key
under the panels says, per stage, what changed from the stage before: resolution, learning-rate
policy, augmentation recipe, optimizer, batch size, mixup, frozen layers, a restart from the best
weights (``stage_labels(protocol)`` derives these from a ``Protocol``). Numbers stay short and
horizontal, so six stages twelve epochs apart in a 108-epoch run (DenseNet Model 2) do not
overlap; the descriptions, which would, are in the key.

Figures are ``matplotlib.figure.Figure`` objects rendered by the Agg canvas directly, so
importing tinynet never switches a notebook's matplotlib backend.
"""
import textwrap

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tinynet import io as tio

_KEY_WIDTH = 150  # characters per key line before it wraps (12-inch figure, 8 pt)


def _optimizer_text(spec):
    """``rmsprop 0.0001`` from ``{"name": "rmsprop", "learning_rate": 1e-4, ...}``."""
    spec = dict(spec or {})
    name = spec.pop("name", "optimizer")
    lr = spec.pop("learning_rate", None)
    return name if lr is None else f"{name} {lr:g}"


def lr_text(policy):
    """A short description of a learning-rate policy that needs no steps per epoch (the
    policies' own ``describe`` counts CyclicLR's half-cycle in iterations)."""
    from tinynet.training import lr as lrs

    if isinstance(policy, lrs.Cyclic):
        return (f"cyclic lr {policy.base_lr:g}-{policy.max_lr:g} ({policy.mode}, half-cycle "
                f"{policy.step_size_epochs:.3g} ep)")
    if isinstance(policy, lrs.Constant):
        return "lr carried over" if policy.lr is None else f"constant lr {policy.lr:g}"
    if isinstance(policy, lrs.Plateau):
        last = "end" if policy.last_epoch is None else policy.last_epoch
        return (f"ReduceLROnPlateau x{policy.factor:.3g} (patience {policy.patience}, "
                f"stage epochs {policy.first_epoch + 1}-{last})")
    return policy.describe(None)  # the others' descriptions do not use steps per epoch


def stage_labels(protocol):
    """Per stage of ``protocol`` (in order) a dict for ``plot_history(stages=...)``:
    ``{"stage": number (1-based, as history.csv), "name", "resolution", "changes": [phrases],
    "short": a word per change}``. The first stage's changes describe it whole (resolution,
    batch size, augmentation, lr policy, optimizer); a later stage's name only what differs
    from the stage before ("unchanged" when nothing does), e.g. DenseNet Model 2's phase 2:
    ``["cyclic lr 1e-05-6e-05 (triangular2, half-cycle 6 ep)", "from the best weights of the
    stage before"]``, short ``"lr, best"``."""
    out, prev = [], None
    for i, s in enumerate(protocol.stages):
        changes, short = [], []  # short: a word per change, for the mark on the plot

        def change(text, word):
            changes.append(text)
            short.append(word)

        if prev is None or s.resolution != prev.resolution:
            change(f"{s.resolution}px" if prev is None
                   else f"{prev.resolution}px -> {s.resolution}px", f"{s.resolution}px")
        if prev is not None and s.batch_size != prev.batch_size:
            change(f"batch {prev.batch_size} -> {s.batch_size}", "batch")
        if prev is None or s.augment != prev.augment:
            change(f"augment {s.augment}" if s.augment else "no augmentation",
                   "aug" if s.augment else "no aug")
        if prev is None or s.lr != prev.lr:
            change(lr_text(s.lr), "lr")
        if prev is not None and s.optimizer:
            change("new optimizer " + _optimizer_text(protocol.optimizer_spec(i)), "opt")
        if prev is not None and s.mixup != prev.mixup or prev is None and s.mixup:
            change(f"mixup alpha {s.mixup.alpha:g}" if s.mixup else "no mixup", "mixup")
        if prev is not None and s.freeze != prev.freeze or prev is None and s.freeze:
            change(f"frozen: {', '.join(s.freeze)}" if s.freeze else "all layers train",
                   "freeze")
        if s.restart_from_best:
            change("from the best weights of the stage before", "best")
        if prev is None:  # the whole set-up: batch size and optimizer too
            changes[1:1] = [f"batch {s.batch_size}"]
            changes.append(_optimizer_text(protocol.optimizer_spec(i)))
            short = short[:1]
        out.append({"stage": i + 1, "name": s.name, "resolution": s.resolution,
                    "changes": changes or ["unchanged"], "short": ", ".join(short)})
        prev = s
    return out


def _history_labels(starts):
    """Labels from the history alone (no ``stages``): the resolution, where it changes."""
    out, prev = [], None
    for stage, row in starts.iterrows():
        res = int(row["resolution"])
        changed = prev is None or res != prev
        change = (f"{res}px" if prev is None else f"{prev}px -> {res}px" if changed
                  else "same resolution")
        out.append({"stage": stage, "name": f"stage {stage}", "changes": [change],
                    "short": f"{res}px" if changed else ""})
        prev = res
    return out


def _marker_rows(spans, margin):
    """A row (0, 1, ...) per mark, given each mark's ``(left, right)`` extent: the first row
    where it does not overlap (``margin`` apart) the last mark placed in that row."""
    right_end, rows = {}, []
    for left, right in spans:
        row = 0
        while row in right_end and left < right_end[row] + margin:
            row += 1
        right_end[row] = right
        rows.append(row)
    return rows


def _mark_stages(ax, starts, marks, fontsize=7):
    """Dashed lines at the stage starts, each with its mark (number and short change words)
    horizontally at the top of ``ax``, right of its line; a mark that would overlap the one
    before steps down a row."""
    xmin, xmax = ax.get_xlim()
    width_px = ax.get_window_extent().width
    char_px = 0.62 * fontsize * ax.figure.dpi / 72  # a generous average glyph width
    spans, lines = [], []
    for stage, row in starts.iterrows():
        v = row["global_epoch"] - 0.5
        left = (v - xmin) / (xmax - xmin) * width_px  # a mark starts at its line
        spans.append((left, left + (len(marks[stage]) + 1) * char_px))
        lines.append(v)
    for v, (stage, _), r in zip(lines, starts.iterrows(), _marker_rows(spans, char_px)):
        ax.axvline(v, color="grey", linestyle="--", linewidth=0.8)
        ax.annotate(marks[stage], (v, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(1.5, -3 - (fontsize + 4) * r), textcoords="offset points",
                    fontsize=fontsize, ha="left", va="top", color="dimgrey",
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))


def plot_history(history, path, title=None, stages=None):
    """Accuracy and loss (train and validation) against global epoch from a history DataFrame
    with the columns of ``history.csv``; returns the figure (also written to ``path``).

    Each stage start is a dashed line marked at the top of both panels with the stage number
    and a word per change (``"2 lr, best"``); the key under the panels gives each stage's
    name, first epoch and what changed in full. ``stages``: ``stage_labels(protocol)`` (a list
    of dicts with ``stage``, ``name``, ``changes`` and ``short``); without it only the
    resolution is known (the history's one per-stage column)."""
    starts = history.groupby("stage", sort=True).first()
    by_number = {d["stage"]: d for d in (stages or [])}
    fallback = {d["stage"]: d for d in _history_labels(starts)}
    key, marks = [], {}
    for stage, row in starts.iterrows():
        d = by_number.get(stage, fallback[stage])
        marks[stage] = f"{stage} {d.get('short', '')}".strip()
        text = (f"{stage}  {d['name']} (from epoch {int(row['global_epoch'])}): "
                f"{', '.join(d['changes'])}")
        key.extend(textwrap.wrap(text, _KEY_WIDTH, subsequent_indent="      "))
    key_height = 0.25 + 0.16 * len(key)
    fig = Figure(figsize=(12, 4.2 + key_height))
    grid = fig.add_gridspec(2, 2, height_ratios=[4.2, key_height])
    axes = [fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])]
    x = history["global_epoch"]
    lines = [v - 0.5 for v in starts["global_epoch"]]
    lo, hi = min(lines + [x.min()]), max(lines + [x.max()])
    pad = 0.02 * ((hi - lo) or 1)
    for ax, metric, label in ((axes[0], "accuracy", "accuracy"), (axes[1], "loss", "loss")):
        ax.plot(x, history[metric], label=f"train {label}")
        ax.plot(x, history[f"val_{metric}"], label=f"validation {label}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_xlim(lo - pad, hi + pad)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    key_ax = fig.add_subplot(grid[1, :])
    key_ax.axis("off")
    key_ax.text(0.0, 1.0, "\n".join(["stages (what changes at each dashed line):"] + key),
                transform=key_ax.transAxes, va="top", ha="left", fontsize=8,
                family="monospace", linespacing=1.35)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    for ax in axes:  # after the layout: the marks are placed by the axes' final width
        _mark_stages(ax, starts, marks)
    tio.atomic_write(path, lambda local: fig.savefig(local, dpi=110, format="png"))
    return fig
