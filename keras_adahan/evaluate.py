"""Evaluates a trained run: `python -m keras_adahan.evaluate RUN_DIR`.

Reports accuracy overall and per question type, the share of cells kept (and, for
AdaHAN, its distribution), and grounding: how often the highest-presence kept cell lies
on the object that answers the question, and what share of the kept cells' image area
lies on it. Writes `metrics.json` (or `metrics_SPLIT.json`) and plots into the run folder;
`--dataset CONFIG` tests the run on another barn_vqa config (`metrics_CONFIG.json`).
"""

import argparse
import dataclasses
import json
import os
import sys

import numpy as np

from keras_adahan import run_files
from keras_adahan import scenes

# Questions whose answer is not one object have no single target to look at: counting,
# and a question about an empty place (answered "nothing", in the `*_open` configs).
UNGROUNDED_TYPES = ("count",)
UNGROUNDED_ANSWERS = (scenes.NOTHING,)


def cell_centres(grid):
    """Normalized `(y, x)` centres of a `grid x grid` cell layout, row-major, `(N, 2)`."""
    centres = (np.arange(grid) + 0.5) / grid
    y, x = np.meshgrid(centres, centres, indexing="ij")
    return np.stack([y.ravel(), x.ravel()], axis=1)


def grounding(presence, mask, boxes):
    """Grounding of each question's attention on its target box.

    Args:
        presence, mask: `(Q, N)` presence scores and 0/1 kept cells of a square grid.
        boxes: `(Q, 4)` normalized `(ymin, xmin, ymax, xmax)` target boxes.

    Returns:
        `(top_on_target, kept_area_share, top_touches_target)`, each `(Q,)`: whether the
        centre of the kept cell with the highest presence lies inside the box; the share
        of the kept cells' area that lies inside the box; and, looser, whether that top
        cell overlaps the box at all (a near miss: the cell beside a small object).
    """
    grid = int(round(np.sqrt(presence.shape[1])))
    kept = mask > 0.5
    top = np.argmax(np.where(kept, presence, -np.inf), axis=1)
    centres = cell_centres(grid)[top]
    ymin, xmin, ymax, xmax = boxes.T
    top_on_target = (
        (centres[:, 0] >= ymin) & (centres[:, 0] <= ymax)
        & (centres[:, 1] >= xmin) & (centres[:, 1] <= xmax)
    )
    # Overlap of every cell with every box, as a share of the cell's area.
    edges = np.arange(grid) / grid
    low, high = edges, edges + 1.0 / grid
    overlap_y = np.clip(np.minimum(high, ymax[:, None]) - np.maximum(low, ymin[:, None]), 0, None)
    overlap_x = np.clip(np.minimum(high, xmax[:, None]) - np.maximum(low, xmin[:, None]), 0, None)
    cell_share = (overlap_y[:, :, None] * overlap_x[:, None, :]).reshape(len(boxes), -1) * grid**2
    kept_area_share = (cell_share * kept).sum(1) / np.maximum(kept.sum(1), 1)
    top_touches_target = np.take_along_axis(cell_share, top[:, None], axis=1)[:, 0] > 0
    return top_on_target, kept_area_share, top_touches_target


def grounded_questions(types, type_names, answers, answer_names):
    """Boolean mask of the questions with one target object (all but `UNGROUNDED_TYPES`
    and `UNGROUNDED_ANSWERS`)."""
    return ~np.isin(
        types, [type_names.index(t) for t in UNGROUNDED_TYPES if t in type_names]
    ) & ~np.isin(
        answers, [answer_names.index(a) for a in UNGROUNDED_ANSWERS if a in answer_names]
    )


def mean_per_label(values, labels, names):
    """`{name: mean of values where labels == its index}` over the labels present."""
    return {name: float(values[labels == i].mean())
            for i, name in enumerate(names) if np.any(labels == i)}


def compute_metrics(outputs, arrays, answer_names, type_names, variant):
    """All evaluation figures of one split, as a JSON-ready dict."""
    predictions = outputs["answer"].argmax(-1)
    correct = predictions == arrays.answers
    num_cells = outputs["mask"].shape[1]
    kept_counts = outputs["mask"].sum(1)
    metrics = {
        "num_questions": int(len(correct)),
        "accuracy": float(correct.mean()),
        "accuracy_per_type": mean_per_label(correct, arrays.types, type_names),
        "num_cells": int(num_cells),
        "kept_share_mean": float(kept_counts.mean() / num_cells),
    }
    if variant == "adahan":
        quantiles = np.percentile(kept_counts, [0, 10, 50, 90, 100])
        metrics["kept_cells_distribution"] = dict(
            zip(("min", "p10", "median", "p90", "max"), map(float, quantiles))
        )
    grounded = grounded_questions(arrays.types, type_names, arrays.answers, answer_names)
    if grounded.any():
        top_on, area_share, top_touches = grounding(
            outputs["presence"][grounded], outputs["mask"][grounded], arrays.boxes[grounded]
        )
        metrics["grounding_top_cell"] = float(top_on.mean())
        metrics["grounding_top_cell_touches"] = float(top_touches.mean())
        metrics["grounding_kept_area_share"] = float(area_share.mean())
        metrics["grounding_top_cell_per_type"] = mean_per_label(
            top_on, arrays.types[grounded], type_names)
        # Per answer too: a small animal the model never needs to see (it can answer by
        # elimination) shows up here.
        metrics["grounding_top_cell_per_answer"] = mean_per_label(
            top_on, arrays.answers[grounded], answer_names)
    return metrics


def predict_split(model, arrays, batch_size=256):
    """Runs the single-question model over every question of a split, as numpy arrays."""
    parts = [model.predict_on_batch(inputs) for inputs in arrays.batches(batch_size)]
    return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in ("answer", "presence", "mask")}


def write_plots(outputs, arrays, answer_names, metrics, variant, run_dir, suffix=""):
    from keras_adahan import plots

    os.makedirs(os.path.join(run_dir, "plots"), exist_ok=True)
    # 6 test questions cycling through the question types, each from another image.
    types = np.unique(arrays.types)
    rows = []
    for n in range(6):
        of_type = np.flatnonzero(arrays.types == types[n % len(types)])
        if n < len(of_type):
            rows.append(of_type[n])
    rows = np.array(rows)
    predictions = outputs["answer"].argmax(-1)
    plots.plot_attention(
        images=arrays.images[arrays.image_index[rows]],
        questions=[arrays.texts[r] for r in rows],
        answers=[answer_names[a] for a in arrays.answers[rows]],
        predictions=[answer_names[p] for p in predictions[rows]],
        presence=outputs["presence"][rows],
        mask=outputs["mask"][rows],
        path=os.path.join(run_dir, "plots", f"attention{suffix}.png"),
    )
    if variant == "adahan":
        plots.plot_kept_cells(
            outputs["mask"].sum(1), metrics["num_cells"],
            os.path.join(run_dir, "plots", f"kept_cells{suffix}.png"),
        )


def format_summary(metrics, title):
    lines = [title, f"  accuracy            {metrics['accuracy']:.2%}  ({metrics['num_questions']} questions)"]
    for name, acc in metrics["accuracy_per_type"].items():
        lines.append(f"    {name:<17} {acc:.2%}")
    lines.append(f"  cells kept (mean)   {metrics['kept_share_mean']:.2%} of {metrics['num_cells']}")
    if "kept_cells_distribution" in metrics:
        d = metrics["kept_cells_distribution"]
        lines.append("  cells kept          min {min:.0f} / p10 {p10:.0f} / median {median:.0f} / "
                     "p90 {p90:.0f} / max {max:.0f}".format(**d))
    if "grounding_top_cell" in metrics:
        lines.append(f"  grounding top cell  {metrics['grounding_top_cell']:.2%}"
                     "  (highest-presence kept cell on the target object)")
        for name, share in metrics.get("grounding_top_cell_per_type", {}).items():
            lines.append(f"    {name:<17} {share:.2%}")
        if "grounding_top_cell_per_answer" in metrics:  # Evaluated before it existed: absent.
            lines.append("    by answer         " + ", ".join(
                f"{name} {share:.1%}" for name, share in metrics["grounding_top_cell_per_answer"].items()))
        if "grounding_top_cell_touches" in metrics:  # Runs evaluated before it existed lack it.
            lines.append(f"  top cell touching   {metrics['grounding_top_cell_touches']:.2%}"
                         "  (overlapping the target's box at all)")
        lines.append(f"  kept area on target {metrics['grounding_kept_area_share']:.2%}")
    return "\n".join(lines)


def model_answer_labels(dataset_answers, model_answers, dataset_name):
    """Index of each of a dataset's answers among the model's (its logits' order).

    Raises a `ValueError` naming the answers the model was not trained to give.
    """
    missing = [a for a in dataset_answers if a not in model_answers]
    if missing:
        raise ValueError(
            f"barn_vqa/{dataset_name} has answers {missing} the model cannot give (its "
            f"answers: {list(model_answers)}); evaluate it on a config whose answers it knows"
        )
    return np.array([list(model_answers).index(a) for a in dataset_answers])


def evaluate(model, builder, vocabulary, run_dir, variant, split="test", plots=True,
             answers=None):
    """Evaluates `model` on a split of `builder`'s dataset; writes metrics and plots.

    `answers`: the model's answer labels, given to evaluate it on a dataset config it was
    not trained on (e.g. trained on `classic_open`, tested on `classic`). The dataset's
    labels are then matched to them by name, and the files carry the config's name
    (`metrics_classic.json`, `plots/attention_classic.png`).
    """
    from keras_adahan import data

    image_size = model.input["image"].shape[1]
    max_length = model.input["question"].shape[1]
    arrays = data.question_arrays(builder, split, vocabulary, image_size, max_length)
    answer_names = data.answer_names(builder)
    suffix = "" if split == "test" else f"_{split}"
    if answers is not None:
        config = builder.builder_config.name
        labels = model_answer_labels(answer_names, answers, config)
        arrays = dataclasses.replace(arrays, answers=labels[arrays.answers])
        answer_names, suffix = list(answers), f"_{config}{suffix}"
    outputs = predict_split(model, arrays)
    metrics = compute_metrics(outputs, arrays, answer_names, data.question_type_names(builder), variant)
    metrics["split"] = split
    path = os.path.join(run_dir, f"metrics{suffix}.json")
    if os.path.exists(path):  # Re-evaluating keeps what training recorded (train_*).
        previous = run_files.read_json(path)
        metrics.update({k: v for k, v in previous.items() if k.startswith("train_")})
    run_files.write_json(path, metrics)
    if plots:
        write_plots(outputs, arrays, answer_names, metrics, variant, run_dir, suffix)
    return metrics


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m keras_adahan.evaluate",
        description="Evaluate a trained keras-adahan run folder on a barn_vqa split.",
    )
    parser.add_argument("run_dir", help="a run folder written by keras_adahan.train")
    parser.add_argument("--split", default="test", choices=("train", "validation", "test"),
                        help="which split to evaluate (default: test)")
    parser.add_argument("--data_dir", default=None,
                        help="TFDS data folder (default: the one the run was trained with)")
    parser.add_argument("--dataset", default=None, choices=sorted(scenes.CONFIGS),
                        help="barn_vqa config to evaluate on (default: the run's own); "
                             "another one writes metrics_CONFIG.json, e.g. a run trained on "
                             "classic_open tested on classic")
    args = parser.parse_args(argv)
    try:
        run = run_files.load_run(args.run_dir)
        from keras_adahan import data

        trained_on = run.config["train"]["dataset"]
        dataset = args.dataset or trained_on
        builder = data.dataset_builder(
            dataset, args.data_dir or run.config["train"]["data_dir"], build=False
        )
        if dataset != trained_on:  # Refuse answers the model cannot give before predicting.
            model_answer_labels(data.answer_names(builder), run.answers, dataset)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    metrics = evaluate(run.model, builder, run.vocabulary, args.run_dir,
                       run.config["model"]["variant"], split=args.split,
                       answers=None if dataset == trained_on else run.answers)
    print(format_summary(metrics, f"{args.run_dir} on barn_vqa/{dataset} {args.split}"))
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
