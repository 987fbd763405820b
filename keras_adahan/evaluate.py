"""Evaluates a trained run: `python -m keras_adahan.evaluate RUN_DIR`.

Reports accuracy overall and per question type, the share of cells kept (and, for
AdaHAN, its distribution), and grounding: how often the highest-presence kept cell lies
on the object that answers the question, and what share of the kept cells' image area
lies on it. `evaluate` computes; `write_evaluation` writes `metrics.json` (or
`metrics_SPLIT.json`) and plots into the run folder; `--dataset NAME` tests the run on
another dataset with the same answers (`metrics_NAME.json`).
"""

import dataclasses
import hashlib
import json
import os
import re
import warnings

import numpy as np

from keras_adahan import cli
from keras_adahan import folders
from keras_adahan import geometry
from keras_adahan import run_files


@dataclasses.dataclass
class Evaluation:
    """What `evaluate` computed: `metrics` (JSON-ready), the model's `outputs` per question,
    the split's `arrays` (`data.QuestionArrays`), the `answer_names` of the logits, the
    file `suffix` its files carry ("" for the run's own test split), the model's
    `cell_edges` and the dataset's question `type_names`."""

    metrics: dict
    outputs: dict
    arrays: object
    answer_names: list
    suffix: str
    cell_edges: np.ndarray
    type_names: list


def grounding(presence, mask, boxes, edges):
    """Grounding of each question's attention on its target box.

    Args:
        presence, mask: `(Q, N)` presence scores and 0/1 kept cells of a `G x G` grid.
        boxes: `(Q, 4)` normalized `(ymin, xmin, ymax, xmax)` target boxes.
        edges: `(G + 1,)` normalized cell edges, the model's (`model.cell_edges`).

    Returns:
        `(top_on_target, kept_area_share, top_touches_target, target_kept)`, each `(Q,)`:
        whether the centre of the kept cell with the highest presence lies inside the box;
        the share of the kept cells' area that lies inside the box; whether that top cell
        overlaps the box at all (a near miss: the cell beside a small object); and whether
        any kept cell overlaps the box (what a relational module over the kept cells needs).
    """
    kept = mask > 0.5
    grid_size = len(edges) - 1
    top = geometry.top_kept_cell(presence, mask)
    centres = geometry.cell_centres(grid_size, edges)[top]
    ymin, xmin, ymax, xmax = boxes.T
    top_on_target = (
        (centres[:, 0] >= ymin) & (centres[:, 0] <= ymax)
        & (centres[:, 1] >= xmin) & (centres[:, 1] <= xmax)
    )
    cell_share = geometry.box_overlap_shares(grid_size, boxes, edges)  # (Q, N)
    kept_area_share = (cell_share * kept).sum(1) / np.maximum(kept.sum(1), 1)
    top_touches_target = np.take_along_axis(cell_share, top[:, None], axis=1)[:, 0] > 0
    target_kept = ((cell_share > 0) & kept).any(1)
    return top_on_target, kept_area_share, top_touches_target, target_kept


def grounded_questions(arrays, type_names, answer_names, spec):
    """Boolean mask of the questions with one target object: those with a box, but the
    dataset's `ungrounded_types` (counting) and `ungrounded_answers` ("nothing")."""
    ymin, xmin, ymax, xmax = arrays.boxes.T
    has_box = (ymax > ymin) & (xmax > xmin)
    return has_box & ~np.isin(
        arrays.types, [type_names.index(t) for t in spec.ungrounded_types if t in type_names]
    ) & ~np.isin(
        arrays.answers,
        [answer_names.index(a) for a in spec.ungrounded_answers if a in answer_names],
    )


def mean_per_label(values, labels, names):
    """`{name: mean of values where labels == its index}` over the labels present."""
    return {name: float(values[labels == i].mean())
            for i, name in enumerate(names) if np.any(labels == i)}


def compute_metrics(outputs, arrays, answer_names, type_names, variant, grounded, cell_edges):
    """All evaluation figures of one split, as a JSON-ready dict.

    `grounded`: boolean `(Q,)`, the questions grounding is measured on; `cell_edges`: the
    model's (`model.cell_edges`).
    """
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
        # Does the number of cells depend on the question? (The paper's promise: fewer
        # for questions about one object.)
        metrics["kept_cells_per_type"] = mean_per_label(kept_counts, arrays.types, type_names)
    if grounded.any():
        top_on, area_share, top_touches, target_kept = grounding(
            outputs["presence"][grounded], outputs["mask"][grounded], arrays.boxes[grounded],
            cell_edges,
        )
        metrics["grounding_top_cell"] = float(top_on.mean())
        metrics["grounding_top_cell_touches"] = float(top_touches.mean())
        metrics["grounding_kept_area_share"] = float(area_share.mean())
        metrics["grounding_target_kept"] = float(target_kept.mean())
        metrics["grounding_target_kept_per_type"] = mean_per_label(
            target_kept, arrays.types[grounded], type_names)
        metrics["grounding_top_cell_per_type"] = mean_per_label(
            top_on, arrays.types[grounded], type_names)
        # Per answer too: a small animal the model never needs to see (it can answer by
        # elimination) shows up here.
        metrics["grounding_top_cell_per_answer"] = mean_per_label(
            top_on, arrays.answers[grounded], answer_names)
    return metrics


class NonFiniteAnswersError(ValueError):
    """The model's answers are not finite: its weights are damaged or training diverged."""


def predict_split(model, arrays, batch_size=256):
    """Runs the single-question model over every question of a split, as numpy arrays.

    Raises:
        NonFiniteAnswersError: the model's answers are not finite (NaN or infinite weights).
    """
    parts = [model.predict_on_batch(inputs) for inputs in arrays.batches(batch_size)]
    outputs = {k: np.concatenate([np.asarray(p[k]) for p in parts])
               for k in ("answer", "presence", "mask")}
    bad = ~np.isfinite(outputs["answer"]).all(-1)
    if bad.any():
        raise NonFiniteAnswersError(
            f"the model's answers are not finite (NaN or infinite) for {int(bad.sum())} of "
            f"{len(bad)} questions: its weights are damaged or diverged; retrain it")
    return outputs


def model_answer_labels(dataset_answers, model_answers, dataset_name):
    """Index of each of a dataset's answers among the model's (its logits' order).

    Raises a `ValueError` naming the answers the model was not trained to give.
    """
    missing = [a for a in dataset_answers if a not in model_answers]
    if missing:
        raise ValueError(
            f"{dataset_name} has answers {missing} the model cannot give (its answers: "
            f"{list(model_answers)}); evaluate it on a dataset whose answers it knows"
        )
    return np.array([list(model_answers).index(a) for a in dataset_answers])


def in_model_order(arrays, dataset, model_answers):
    """`arrays` (a dataset's `QuestionArrays`) with their answers numbered as the model
    numbers its answers, matched by name (a run of convert_reference keeps the reference's
    order; another dataset has its own). Raises `ValueError` as `model_answer_labels`."""
    labels = model_answer_labels(dataset.answer_names, model_answers, dataset.spec.title)
    return dataclasses.replace(arrays, answers=labels[arrays.answers])


def file_tag(dataset_name):
    """The name another dataset's evaluation files carry: `metrics_TAG.json` (classic ->
    classic; folder:/a/b -> folder-a-b-HASH, where the hash keeps folder:/a-b apart)."""
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset_name).strip("-")
    if tag != dataset_name:
        tag += "-" + hashlib.sha256(dataset_name.encode()).hexdigest()[:8]
    return tag


def evaluate(model, dataset, vocabulary, split=None, answers=None):
    """Evaluates `model` (a `VQAModel`) on a split of a prepared `data.Dataset`.

    `split`: defaults to the dataset's evaluation split (its test split; CLEVR's validation
    split, its test split having no answers), whose figures go to `metrics.json`.
    `answers`: the model's answer labels, given to evaluate it on a dataset it was not
    trained on (e.g. trained on `classic_open`, tested on `classic`). The dataset's labels
    are then matched to them by name, and the files carry the dataset's name
    (`metrics_classic.json`, `plots/attention_classic.png`).

    Returns:
        An `Evaluation`; nothing is written (see `write_evaluation`).
    """
    from keras_adahan import data

    config = model.config
    split = split or dataset.spec.evaluation_split
    data.check_question_lengths(dataset, config.max_question_length, [split])
    arrays = data.question_arrays(dataset, split, vocabulary, config.image_size,
                                  config.max_question_length)
    answer_names = dataset.answer_names
    suffix = "" if split == dataset.spec.evaluation_split else f"_{split}"
    if answers is not None:
        arrays = in_model_order(arrays, dataset, answers)
        answer_names, suffix = list(answers), f"_{file_tag(dataset.name)}{suffix}"
    outputs = predict_split(model, arrays)
    grounded = grounded_questions(arrays, dataset.type_names, answer_names, dataset.spec)
    metrics = compute_metrics(outputs, arrays, answer_names, dataset.type_names,
                              config.variant, grounded, model.cell_edges)
    metrics["split"] = split
    return Evaluation(metrics, outputs, arrays, answer_names, suffix, model.cell_edges,
                      list(dataset.type_names))


def write_evaluation(evaluation, run_dir):
    """Writes `metrics{suffix}.json` and the attention (and AdaHAN kept-cells) plots of an
    `Evaluation` into `run_dir`."""
    run_files.write_json(os.path.join(run_dir, f"metrics{evaluation.suffix}.json"),
                         evaluation.metrics)
    _write_plots(evaluation, run_dir)


def _write_plots(evaluation, run_dir):
    from keras_adahan import plots

    arrays, outputs, names = evaluation.arrays, evaluation.outputs, evaluation.answer_names
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
        answers=[names[a] for a in arrays.answers[rows]],
        predictions=[names[p] for p in predictions[rows]],
        presence=outputs["presence"][rows],
        mask=outputs["mask"][rows],
        cell_edges=evaluation.cell_edges,
        path=os.path.join(run_dir, "plots", f"attention{evaluation.suffix}.png"),
    )
    if "kept_cells_distribution" in evaluation.metrics:
        plots.plot_kept_cells(
            outputs["mask"].sum(1), evaluation.metrics["num_cells"],
            os.path.join(run_dir, "plots", f"kept_cells{evaluation.suffix}.png"),
            types=arrays.types, type_names=evaluation.type_names,
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
        if "kept_cells_per_type" in metrics:  # Not in metrics written before it existed.
            lines.append("    mean per type     " + ", ".join(
                f"{name} {mean:.1f}" for name, mean in metrics["kept_cells_per_type"].items()))
    if "grounding_top_cell" in metrics:
        lines.append(f"  grounding top cell  {metrics['grounding_top_cell']:.2%}"
                     "  (highest-presence kept cell on the target object)")
        for name, share in metrics.get("grounding_top_cell_per_type", {}).items():
            lines.append(f"    {name:<17} {share:.2%}")
        lines.append("    by answer         " + ", ".join(
            f"{name} {share:.1%}" for name, share in metrics["grounding_top_cell_per_answer"].items()))
        lines.append(f"  top cell touching   {metrics['grounding_top_cell_touches']:.2%}"
                     "  (overlapping the target's box at all)")
        lines.append(f"  kept area on target {metrics['grounding_kept_area_share']:.2%}")
        lines.append(f"  target kept         {metrics['grounding_target_kept']:.2%}"
                     "  (some kept cell overlapping the target's box)")
        if len(metrics["grounding_target_kept_per_type"]) > 1:
            lines.append("    per type          " + ", ".join(
                f"{name} {share:.1%}"
                for name, share in metrics["grounding_target_kept_per_type"].items()))
    return "\n".join(lines)


def main(argv=None):
    from keras_adahan import data

    parser = cli.ArgumentParser(
        prog="python -m keras_adahan.evaluate",
        description="Evaluate a trained keras-adahan run folder on a split of its dataset.",
    )
    parser.add_argument("run_dir", help="a run folder written by keras_adahan.train")
    parser.add_argument("--split", default=None, choices=("train", "validation", "test"),
                        help="which split to evaluate (default: the dataset's test split; "
                             "CLEVR's validation split)")
    parser.add_argument("--data_dir", default=None, type=cli.folder_path,
                        help="TFDS data folder (default: the one the run was trained with)")
    parser.add_argument("--dataset", default=None, type=cli.dataset_name,
                        help="dataset to evaluate on (default: the run's own); another one "
                             "writes metrics_NAME.json, e.g. a run trained on classic_open "
                             "tested on classic")
    args = parser.parse_args(argv)
    lock = None
    try:
        run_dir = run_files.run_folder_of(args.run_dir)
        if os.path.isfile(os.path.join(run_dir, run_files.CONFIG)):  # A run's, not a user's.
            # Before the model is read: a trainer resuming the run would have its new
            # metrics.json replaced by these, the older model's.
            lock = folders.FolderLock(run_dir, advice="wait for it to finish")
        run = run_files.load_run(args.run_dir)
        trained_on = run.config["train"]["dataset"]
        name = args.dataset or trained_on
        dataset = data.prepare_dataset(name, args.data_dir or run.config["train"]["data_dir"],
                                       build=False)
        # Answers matched by name on another dataset, or where the run numbers them its own
        # way (a run of keras_adahan.convert_reference: the reference's order).
        by_name = name != trained_on or list(run.answers) != list(dataset.answer_names)
        if by_name:  # Refuse answers the model cannot give before predicting.
            model_answer_labels(dataset.answer_names, run.answers, dataset.spec.title)
        if name != trained_on:  # Its own test split's new words are part of its benchmark.
            split = args.split or dataset.spec.evaluation_split
            questions, words = data.unknown_words(dataset, split, run.vocabulary)
            if questions:
                warnings.warn(
                    f"{questions:,} of the {len(dataset.question_texts(split)):,} questions "
                    f"of {dataset.spec.title}'s {split} split hold words the model never "
                    f"saw in training, read as unknown: {', '.join(map(repr, words[:8]))}"
                    f"{' ...' if len(words) > 8 else ''}")
        evaluation = evaluate(run.model, dataset, run.vocabulary, split=args.split,
                              answers=run.answers if by_name else None)
        write_evaluation(evaluation, run_dir)
    except (FileNotFoundError, ValueError) as error:
        raise cli.UserError(str(error)) from None
    finally:
        if lock is not None:
            lock.release()
    print(format_summary(evaluation.metrics, f"{args.run_dir} on {dataset.spec.title} "
                                             f"{evaluation.metrics['split']}"))
    print(json.dumps(evaluation.metrics))


if __name__ == "__main__":
    cli.run(main)
