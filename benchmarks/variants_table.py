"""Trains han / adahan / soft / none over several seeds and prints the README's table.

    python benchmarks/variants_table.py --dataset classic --seeds 0 1 2 3 4 --epochs 3
    python benchmarks/variants_table.py --dataset randomized --seeds 0 1 2
    python benchmarks/variants_table.py --dataset randomized --variants han adahan --seeds 0 1 2 3 4
    python benchmarks/variants_table.py --variants han adahan --runs_dir runs/table_k13 -- --k 0.05
    python benchmarks/variants_table.py --dataset classic_open --variants han adahan \
        --seeds 0 1 2 3 4 --epochs 3 --test_dataset classic

Each run is a normal `python -m keras_adahan.train` run folder under --runs_dir (default
runs/table); finished runs are reused (re-evaluated if their metrics predate a column; one
trained with other settings, finished or not, is refused, naming them) and an interrupted one is resumed from
its last epoch, so an interrupted table picks up where it stopped. Runs train in float32, as
the README's tables did, whatever the trainer's `--dtype auto` would pick (`-- --dtype
mixed_bfloat16` to change).
Prints mean and spread (sample standard deviation) of test accuracy, share of cells kept
and grounding, as a Markdown table; with --test_dataset, of the runs evaluated on that
config's test split (`python -m keras_adahan.evaluate RUN --dataset CONFIG`).
"""

import os
import subprocess
import sys

import numpy as np

from keras_adahan import cli
from keras_adahan import run_files
from keras_adahan.config import VARIANTS
from keras_adahan.datasets import registry
from keras_adahan.evaluate import file_tag

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/runs.py
import runs  # noqa: E402

COLUMNS = (
    ("accuracy", "test accuracy"),
    ("kept_share_mean", "cells kept"),
    ("grounding_top_cell", "grounding (top cell on target)"),
    ("grounding_top_cell_touches", "top cell touching target"),
)


def trainer_flags(dataset, variant, seed, args):
    """The run folder and the trainer flags of one run, before the user's (after --)."""
    out = os.path.join(args.runs_dir, f"{dataset}-{args.preset}-{variant}-seed{seed}")
    flags = ["--dataset", dataset, "--preset", args.preset, "--variant", variant,
             "--seed", str(seed), "--output_dir", out, "--resume",
             "--dtype", "float32"]  # As the tables so far; `-- --dtype ...` overrides.
    if args.epochs:
        flags += ["--epochs", str(args.epochs)]
    return out, flags


def run(dataset, variant, seed, args):
    out, flags = trainer_flags(dataset, variant, seed, args)
    runs.train_unless_finished(out, flags + args.trainer_flags, args.quiet)
    metrics = os.path.join(out, "metrics.json")
    evaluate = [sys.executable, "-m", "keras_adahan.evaluate", out]
    if args.test_dataset and args.test_dataset != dataset:
        metrics = os.path.join(out, f"metrics_{file_tag(args.test_dataset)}.json")
        evaluate += ["--dataset", args.test_dataset]
    result = read_metrics(metrics, evaluate) if os.path.exists(metrics) else {}
    # Not evaluated on that config yet, or before the "touching" figure existed.
    if "grounding_top_cell_touches" not in result:
        runs.check(subprocess.run(evaluate, stdout=subprocess.DEVNULL), "evaluation", out)
        result = read_metrics(metrics, evaluate)
    return result


def read_metrics(path, evaluate):
    """A run's metrics file; one line naming it, and the `evaluate` command that rewrites
    it, when it is not a file of metrics."""
    rewrite = f"`{' '.join(['python', *evaluate[1:]])}` rewrites it"
    try:
        result = run_files.read_json(path)
    except ValueError as error:
        raise cli.UserError(f"{error}; {rewrite}") from None
    if not isinstance(result, dict):
        raise cli.UserError(f"{path!r} holds no metrics; {rewrite}")
    return result


def cell(values, percent=True):
    values = np.array([v for v in values if v is not None], dtype=float)
    if not len(values):
        return "-"
    scale = 100 if percent else 1
    spread = values.std(ddof=1) * scale if len(values) > 1 else 0.0
    return f"{values.mean() * scale:.1f} ± {spread:.1f}"


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="classic", type=cli.dataset_name)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--variants", nargs="+", action=cli.Distinct, default=VARIANTS,
                        choices=VARIANTS)
    parser.add_argument("--seeds", nargs="+", type=cli.seed, default=[0, 1, 2],
                        action=cli.Distinct)
    parser.add_argument("--epochs", type=cli.positive_int, default=None,
                        help="default: the trainer's")
    parser.add_argument("--runs_dir", type=cli.folder_path,
                        default=os.path.join("runs", "table"))
    parser.add_argument("--test_dataset", default=None, type=cli.dataset_name,
                        help="report the runs on this config's test split (default: the "
                             "--dataset they train on), e.g. train on classic_open, test on "
                             "classic")
    parser.add_argument("--quiet", action="store_true", help="hide the training output")
    parser.add_argument("trainer_flags", nargs="*",
                        help="more trainer flags, after --: e.g. -- --k 0.05 (use another "
                             "--runs_dir: finished runs are reused by name)")
    args = parser.parse_args(argv)
    if args.trainer_flags:
        from keras_adahan import train
        for variant in args.variants:
            train.check_flags_passed_on(
                args.trainer_flags, trainer_flags(args.dataset, variant, 0, args)[1],
                overridable=["--dtype"])

    rows = []
    for variant in args.variants:
        results = [run(args.dataset, variant, seed, args) for seed in args.seeds]
        rows.append((variant, results))

    tested = (f", tested on {registry.get_dataset(args.test_dataset).title}"
              if args.test_dataset else "")
    print(f"\n{registry.get_dataset(args.dataset).title}{tested}, {args.preset} preset, "
          f"seeds {args.seeds} (mean ± standard deviation, %):\n")
    print("| variant | " + " | ".join(title for _, title in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for variant, results in rows:
        cells = [cell([r.get(key) for r in results]) for key, _ in COLUMNS]
        print(f"| {variant} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    cli.run(main)  # A damaged run folder: one line, not a traceback.
