"""Training curves with stage boundaries marked, like Figs. 3 and 4 of seed 002.

Figures are ``matplotlib.figure.Figure`` objects rendered by the Agg canvas directly, so
importing tinynet never switches a notebook's matplotlib backend.
"""
from matplotlib.figure import Figure

from tinynet import io as tio


def plot_history(history, path, title=None):
    """Accuracy and loss (train and validation) against global epoch from a history DataFrame
    with the columns of ``history.csv``; a dashed line and a label mark each stage's start."""
    fig = Figure(figsize=(12, 4.2))
    axes = fig.subplots(1, 2)
    x = history["global_epoch"]
    for ax, metric, label in ((axes[0], "accuracy", "accuracy"), (axes[1], "loss", "loss")):
        ax.plot(x, history[metric], label=f"train {label}")
        ax.plot(x, history[f"val_{metric}"], label=f"validation {label}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        starts = history.groupby("stage", sort=True).first()
        for stage, row in starts.iterrows():
            ax.axvline(row["global_epoch"] - 0.5, color="grey", linestyle="--", linewidth=0.8)
            ax.annotate(f"{stage}: {int(row['resolution'])}px", (row["global_epoch"] - 0.5, 1.0),
                        xycoords=("data", "axes fraction"), fontsize=7, rotation=90,
                        va="top", ha="right", color="grey")
        ax.legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tio.atomic_write(path, lambda local: fig.savefig(local, dpi=110, format="png"))
