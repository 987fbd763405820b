"""Paints out the object each question asks about and asks again: does the answer need it?

    python benchmarks/erase_probe.py runs/table/classic-default-adahan-seed2

For every test question with a target object (not counting), the target's box, one pixel
wider on each side, is painted over column by column with the pixel just above it (sky
above a roof animal, the barn wall above one in front of it), at the model's input size:
roughly the scene without that animal. A model that answers by looking at the animal loses
the answer and its confidence; one that answers by elimination ("no cow, sheep or pig
there, so: chicken") gives the leftover answer for every painted-out image, as confidently
as on the clean ones. Prints, per question type and per answer, accuracy and the
probability of the right answer on clean and on painted images, and the answer given most
often once the target is gone.
"""

import collections
import dataclasses

import numpy as np

from keras_adahan import cli, data, evaluate, run_files


def erase_targets(arrays):
    """One image per question, its target box painted with the row of pixels above it."""
    images = arrays.images[arrays.image_index].copy()
    size = images.shape[1]
    for image, (ymin, xmin, ymax, xmax) in zip(images, arrays.boxes):
        top = max(int(np.floor(ymin * size)) - 1, 0)
        bottom = min(int(np.ceil(ymax * size)) + 1, size)
        left = max(int(np.floor(xmin * size)) - 1, 0)
        right = min(int(np.ceil(xmax * size)) + 1, size)
        image[top:bottom, left:right] = image[max(top - 1, 0), left:right]
    return dataclasses.replace(arrays, images=images, image_index=np.arange(len(images)))


def true_answer_probability(outputs, answers):
    logits = outputs["answer"] - outputs["answer"].max(-1, keepdims=True)
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return probabilities[np.arange(len(answers)), answers]


def grounded_arrays(run, dataset):
    """The test questions with a target object, their answers numbered as the model numbers
    its answers (a run of convert_reference keeps the reference's order)."""
    model = run.model
    arrays = data.question_arrays(dataset, "test", run.vocabulary, model.config.image_size,
                                  model.config.max_question_length)
    arrays = evaluate.in_model_order(arrays, dataset, run.answers)
    grounded = evaluate.grounded_questions(arrays, dataset.type_names, run.answers, dataset.spec)
    return arrays.rows(grounded)


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a run folder written by keras_adahan.train")
    parser.add_argument("--data_dir", default=None, type=cli.folder_path,
                        help="default: the run's")
    args = parser.parse_args(argv)

    run = run_files.load_run(args.run_dir)
    dataset = data.run_dataset(run, args.data_dir)
    model, arrays, type_names = run.model, grounded_arrays(run, dataset), dataset.type_names

    results = {}
    for name, probe in (("clean", arrays), ("painted", erase_targets(arrays))):
        outputs = evaluate.predict_split(model, probe)
        results[name] = (outputs["answer"].argmax(-1) == arrays.answers,
                         true_answer_probability(outputs, arrays.answers),
                         outputs["answer"].argmax(-1))

    print(f"{args.run_dir}: {len(arrays.answers)} test questions, target painted out\n")
    print("| question | accuracy: clean | painted | p(right answer): clean | painted | "
          "painted: answer given most |")
    print("|---|---|---|---|---|---|")
    groups = [(f"type {n}", arrays.types == t) for t, n in enumerate(type_names)]
    groups += [(f"answer {n}", arrays.answers == a) for a, n in enumerate(run.answers)]
    for label, rows in groups:
        if not rows.any():
            continue
        given, count = collections.Counter(results["painted"][2][rows]).most_common(1)[0]
        print(f"| {label} | {results['clean'][0][rows].mean():.1%} | "
              f"{results['painted'][0][rows].mean():.1%} | {results['clean'][1][rows].mean():.3f} | "
              f"{results['painted'][1][rows].mean():.3f} | "
              f"{run.answers[given]} ({count / rows.sum():.0%}) |")


if __name__ == "__main__":
    cli.run(main)
