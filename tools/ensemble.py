"""Evaluates an ensemble of finished runs: the weighted average of their softmax outputs, as
DenResNet (seed 000) combined its three fine-tuned networks, with 10-crop testing on request.

    python tools/ensemble.py runs/resnet101 runs/resnet152 runs/densenet121 --ten-crop \
        --submission submission.txt

Prints a Markdown table of every member's and the ensemble's top-1/top-5 accuracy and error on
the --split (with --ten-crop: on the full images and with 10-crop testing, both) and writes it
to --output, by default ensemble.md in the current directory: an ensemble belongs to no single
run, and run directories may be read-only or remote, so nothing is written into them.
--submission writes the Tiny ImageNet challenge file of the ensemble (of the run, for one run):
one "<test file> <wnid>" line per test image, sorted by file name, from the 10-crop predictions
when --ten-crop is given. Members must have been trained on the same dataset (same classes); each
is evaluated with its own validation resolution, resizing and normalisation (config.json).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tinynet.errors import TinynetError  # noqa: E402
from tinynet.experiment import (OneLineParser, check_writable, positive_int,  # noqa: E402
                                run_cli)

DEFAULT_OUTPUT = "ensemble.md"


def parse_weights(text):
    """``"1,2,0.5"`` -> ``[1.0, 2.0, 0.5]``: finite numbers >= 0."""
    weights = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated numbers, got {text!r}") from None
        if not (value >= 0 and value != float("inf")):
            raise argparse.ArgumentTypeError(f"weights must be finite numbers >= 0, got {part!r}")
        weights.append(value)
    if not sum(weights) > 0:
        raise argparse.ArgumentTypeError(f"at least one weight must be positive, got {text!r}")
    return weights


def report(ensemble, rows, args):
    """The Markdown file: what was evaluated, then the table."""
    from tinynet.evaluation.ensembles import results_table

    members = ", ".join(f"{n} ({w:.4g})" for n, w in zip(ensemble.names, ensemble.weights))
    lines = [f"# Ensemble of {len(ensemble.runs)} run(s) on the {args.split} split", "",
             f"- runs ({args.model} models) and normalised weights: {members}",
             f"- dataset: {ensemble.data.spec.get('name')}, {ensemble.data.num_classes} classes, "
             f"{rows[0]['images']} {args.split} images",
             "- ensemble: weighted average of the members' softmax outputs, then argmax"]
    if args.ten_crop:
        lines.append("- 10-crop: 4 corners + centre, each also flipped, cut from the stored "
                     "images, resized to each run's validation resolution, softmax averaged")
    return "\n".join(lines + ["", results_table(rows), ""])


def main(argv=None):
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--weights", type=parse_weights, default=None,
                        help="one weight per run, comma-separated (normalised to sum 1; "
                             "default equal)")
    parser.add_argument("--ten-crop", action="store_true",
                        help="also report 10-crop testing (and submit its predictions)")
    parser.add_argument("--crop-size", type=positive_int, default=None,
                        help="10-crop crop side in px (default 7/8 of the image: 56 of 64)")
    parser.add_argument("--model", choices=["best", "final"], default="best")
    parser.add_argument("--split", choices=["val", "test"], default="val",
                        help="labelled split to evaluate (test: CIFAR's labelled test set)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT,
                        help=f"Markdown file for the table (default ./{DEFAULT_OUTPUT})")
    parser.add_argument("--submission", default=None,
                        help="also write the Tiny ImageNet test submission to this file")
    parser.add_argument("--skip-corrupt", action="store_true",
                        help="leave out unreadable images of the evaluated split")
    args = parser.parse_args(argv)
    if args.weights is not None and len(args.weights) != len(args.run_dirs):
        parser.error(f"--weights has {len(args.weights)} value(s) for {len(args.run_dirs)} "
                     f"run(s); give one per run, in order")
    if args.crop_size is not None and not args.ten_crop:
        parser.error("--crop-size applies to 10-crop testing; add --ten-crop")
    for run_dir in args.run_dirs:  # before TensorFlow starts: a typo answers at once
        if "://" not in run_dir and not os.path.isdir(run_dir):
            raise TinynetError(f"run directory {run_dir} does not exist")
    check_writable(args.output, "--output")
    if args.submission:
        check_writable(args.submission, "--submission")

    from tinynet import io as tio
    from tinynet.evaluation.ensembles import Ensemble
    from tinynet.evaluation.submissions import check_submittable, make_submission

    ensemble = Ensemble.load(args.run_dirs, args.weights, args.model, args.skip_corrupt)
    if args.submission:
        check_submittable(ensemble.data)
    rows = ensemble.evaluate_members(args.split, args.ten_crop, args.crop_size)
    text = report(ensemble, rows, args)
    print(text, end="")
    try:
        tio.write_text_atomic(args.output, text)
    except OSError as e:
        raise TinynetError(f"cannot write --output {args.output}: {e.strerror or e}") from None
    print(f"wrote {args.output}")
    if args.submission:
        lines = make_submission(ensemble, args.submission, args.ten_crop, args.crop_size)
        print(f"wrote {args.submission}: {lines} test predictions"
              f"{' (10-crop)' if args.ten_crop else ''}")


if __name__ == "__main__":
    run_cli(main)
