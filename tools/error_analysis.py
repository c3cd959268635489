"""Error analysis of a finished (or running) run directory on the validation set, as in
section 8 of seed 001 (Fig. 14: misclassified images with their true and predicted classes).

    python tools/error_analysis.py runs/resnet_tiny_imagenet [--model best|final]

Writes into RUN_DIR/analysis/: ``metrics.json`` (top-1 and top-5 accuracy and error),
``misclassified.png`` (a gallery of wrong predictions with true and predicted names from
``words.txt``), ``confused_pairs.csv`` (the most frequent true -> predicted confusions),
``per_class_accuracy.csv`` and ``confusion_matrix.png``. The run is loaded with
``tinynet.evaluation.load_run``: the dataset from the registry entry config.json records, the
validation resolution, the resizing and the input normalisation the run trained with.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tinynet.experiment import OneLineParser, positive_int, run_cli  # noqa: E402


def predict_validation(run_dir, which, skip_corrupt=False):
    """``(class_names, class_ids, images uint8, labels, probabilities)`` of the run's
    validation set, evaluated as the run validated (``tinynet.evaluation.load_run``)."""
    import numpy as np

    from tinynet.data.images import decode_images
    from tinynet.evaluation import load_run

    run = load_run(run_dir, which, skip_corrupt=skip_corrupt)
    probabilities, labels = run.predict("val")
    val = run.data.val
    images = val.images if val.in_memory else decode_images(val.paths, val.image_size)[0]
    ids = run.data.class_ids or [str(i) for i in range(run.data.num_classes)]
    return run.data.class_names, ids, np.asarray(images), labels, probabilities


def analyse(class_names, class_ids, images, labels, probabilities, out_dir, gallery=24,
            top_pairs=50):
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

    from tinynet.evaluation import metrics as top_k_metrics

    os.makedirs(out_dir, exist_ok=True)
    names = [n.split(",")[0] for n in class_names]
    predicted = probabilities.argmax(axis=1)
    metrics = top_k_metrics(probabilities, labels)
    top1_acc = metrics["top1_accuracy"]
    metrics["top5_error"] = 1 - metrics["top5_accuracy"]
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)

    k = len(names)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = pd.DataFrame({
        "class": range(k), "wnid": class_ids, "name": names,
        "images": confusion.sum(axis=1), "correct": np.diag(confusion)})
    per_class["accuracy"] = per_class["correct"] / per_class["images"].clip(lower=1)
    per_class.sort_values("accuracy").to_csv(os.path.join(out_dir, "per_class_accuracy.csv"),
                                             index=False)
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    true_idx, pred_idx = np.nonzero(off)
    pairs = pd.DataFrame({"true_wnid": [class_ids[i] for i in true_idx],
                          "true_name": [names[i] for i in true_idx],
                          "predicted_wnid": [class_ids[j] for j in pred_idx],
                          "predicted_name": [names[j] for j in pred_idx],
                          "count": off[true_idx, pred_idx]})
    pairs.sort_values("count", ascending=False, kind="stable").head(top_pairs).to_csv(
        os.path.join(out_dir, "confused_pairs.csv"), index=False)

    wrong = np.nonzero(predicted != labels)[0]
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")][:gallery]
    cols = 6
    rows = max(1, -(-len(wrong) // cols))
    fig = Figure(figsize=(2.1 * cols, 2.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), wrong):
        ax.imshow(images[i], interpolation="nearest")
        ax.set_title(f"true: {names[labels[i]][:22]}\npred: {names[predicted[i]][:22]} "
                     f"({probabilities[i, predicted[i]]:.2f})", fontsize=7)
    fig.suptitle(f"most confident mistakes ({len(np.nonzero(predicted != labels)[0])} of "
                 f"{len(labels)} wrong)", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "misclassified.png"), dpi=100)

    fig = confusion_figure(confusion, f"confusion matrix (row-normalised), top-1 {top1_acc:.3f}")
    fig.savefig(os.path.join(out_dir, "confusion_matrix.png"), dpi=100)
    return metrics


def confusion_figure(confusion, title):
    """The row-normalised confusion matrix (``confusion[true, predicted]`` counts) as an
    image; both class axes tick at whole class indices only (a class 2.5 does not exist)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    rates = confusion / confusion.sum(axis=1, keepdims=True).clip(min=1)
    im = ax.imshow(rates, cmap="viridis", vmin=0, vmax=1)
    ax.set_xlabel("predicted class"), ax.set_ylabel("true class")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--model", choices=["best", "final"], default="best")
    parser.add_argument("--gallery", type=positive_int, default=24,
                        help="misclassified images to show")
    parser.add_argument("--out", default=None, help="output folder (default RUN_DIR/analysis)")
    parser.add_argument("--skip-corrupt", action="store_true",
                        help="leave out unreadable validation images instead of stopping")
    args = parser.parse_args(argv)
    out = args.out or os.path.join(args.run_dir, "analysis")
    metrics = analyse(*predict_validation(args.run_dir, args.model, args.skip_corrupt), out,
                      gallery=args.gallery)
    print(f"top-1 {metrics['top1_accuracy']:.4f} top-5 {metrics['top5_accuracy']:.4f} on "
          f"{metrics['images']} validation images; wrote {out}/")


if __name__ == "__main__":
    run_cli(main)
