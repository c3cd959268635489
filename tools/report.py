"""Paper vs ours: docs-ready markdown for run directories of any experiment.

    python tools/report.py runs/densenet_model1 runs/multi_resnet_cifar
    python tools/report.py runs/ --output docs/reproduction.md

For every run directory given -- or found under a folder given (the folders inside it that
hold a config.json, however deep; a run directory's own subfolders are not searched) -- one
section: the figures its paper reports (recorded in config.json by the experiment script)
beside ours (history.csv, state.json, test_errors.json, test_metrics.json, evaluation.json),
whether each is comparable, what keeps the run from the paper's protocol, the hardware, the
dates, the model and the command. Runs made before the paper's figures were recorded are
matched to their experiment by the protocol name. Prints the markdown, or writes it to
--output. Needs no TensorFlow (``tinynet.evaluation.reports``).
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tinynet.errors import TinynetError  # noqa: E402
from tinynet.experiment import OneLineParser, check_writable, run_cli  # noqa: E402


def expand(paths):
    """The run directories ``paths`` name: each path that is one, and otherwise the run
    directories under it (sorted). Raises ``TinynetError`` for a path that is neither."""
    from tinynet.evaluation.reports import is_run_dir

    found = []
    for path in paths:
        if is_run_dir(path):
            found.append(path)
            continue
        if "://" in path or not os.path.isdir(path):
            raise TinynetError(f"{path}: no such run directory" + (
                "" if "://" in path or os.path.exists(path) else " (it does not exist)"))
        inside = []
        for root, dirs, _ in os.walk(path):
            dirs.sort()
            if root != path and is_run_dir(root):
                inside.append(root)
                dirs[:] = []  # a run directory's checkpoints/, plots/, ... hold no runs
        if not inside:
            raise TinynetError(f"{path} is not a run directory and holds none (no config.json "
                               f"in it or below)")
        found += inside
    return list(dict.fromkeys(found))


def main(argv=None):
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="run directories, or folders holding run directories")
    parser.add_argument("--output", default=None, metavar="FILE.md",
                        help="write the markdown here instead of printing it")
    parser.add_argument("--title", default="Paper vs ours", help="the document's heading")
    args = parser.parse_args(argv)
    from tinynet.evaluation.reports import report_markdown

    if args.output:
        check_writable(args.output, "--output")
    run_dirs = expand(args.run_dirs)
    text = report_markdown(run_dirs, title=args.title)
    if args.output:
        folder = os.path.dirname(os.path.abspath(args.output))
        try:
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-report-")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, args.output)  # atomic: never a half-written report
        except OSError as e:
            raise TinynetError(f"cannot write --output {args.output}: {e.strerror or e}") from None
        print(f"wrote {args.output}: {len(run_dirs)} run{'s' if len(run_dirs) != 1 else ''}")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    run_cli(main)
