"""Parity of the exported artifacts with the Keras model, on the run's test split (CLEVR:
validation, its test split having no answers).

For every artifact: the share of questions whose answer (argmax) equals Keras', accuracy
and its change in points, the largest probability difference, and the share of questions
whose kept-cell mask equals Keras'. For the .tflite files both paths are checked: the
one-call `vqa` signature, and `encode` once per image + `answer` per question.
"""

import os
import time

import numpy as np

from .litert_vqa import LiteRTVQA


def softmax(logits):
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def compare(reference, outputs, answers):
    """Agreement of `outputs` with `reference` (dicts of probabilities and mask)."""
    predicted = outputs["probabilities"].argmax(-1)
    reference_predicted = reference["probabilities"].argmax(-1)
    mask_equal = np.all((outputs["mask"] > 0.5) == (reference["mask"] > 0.5), axis=-1)
    return {
        "answer_agreement": float(np.mean(predicted == reference_predicted)),
        "disagreements": int(np.sum(predicted != reference_predicted)),
        "accuracy": float(np.mean(predicted == answers)),
        "accuracy_change_points": float(
            100 * (np.mean(predicted == answers) - np.mean(reference_predicted == answers))
        ),
        "max_probability_difference": float(
            np.max(np.abs(outputs["probabilities"] - reference["probabilities"]))
        ),
        "mask_agreement": float(np.mean(mask_equal)),
    }


def _subset(arrays, max_questions):
    if max_questions is None or max_questions >= len(arrays.answers):
        return arrays
    return arrays.rows(slice(0, max_questions))


def saved_model_outputs(path, arrays, batch_size=256):
    import tensorflow as tf

    serve = tf.saved_model.load(path).signatures["serving_default"]
    parts = [serve(image=tf.constant(inputs["image"]), question=tf.constant(inputs["question"]))
             for inputs in arrays.batches(batch_size)]
    return {key: np.concatenate([p[key].numpy() for p in parts])
            for key in ("probabilities", "mask")}


def tflite_outputs(path, arrays):
    """`vqa` on every question, and `encode` once per image + `answer` per question."""
    vqa = LiteRTVQA(path)
    one_call = {"probabilities": [], "mask": []}
    split = {"probabilities": [], "mask": []}
    encoded = {}
    for image_index, question in zip(arrays.image_index, arrays.questions):
        image = arrays.images[image_index].astype(np.float32)
        out = vqa.predict(image, question)
        if image_index not in encoded:
            encoded = {image_index: vqa.encode(image)}  # Questions of an image are adjacent.
        out_split = vqa.answer(encoded[image_index], question)
        for key in one_call:
            one_call[key].append(out[key])
            split[key].append(out_split[key])
    stack = lambda outputs: {key: np.stack(values) for key, values in outputs.items()}  # noqa: E731
    return stack(one_call), stack(split)


# A .tflite file answering more than this many points below Keras on the parity split gets
# a warning, at export and wherever it answers (keras_adahan.predict).
MAX_ACCURACY_DROP_POINTS = 1.0


def warnings_for(report):
    """`{file name: message}` for each .tflite file of an export report whose accuracy fell
    more than MAX_ACCURACY_DROP_POINTS below Keras' in its parity check, naming the smallest
    file of the export that stays within them: quantization can change a model's answers
    without an error. Entries it cannot read are passed over."""
    parity = report.get("parity") or {}
    sizes = report.get("artifacts") or {}
    drops, agreements = {}, {}
    for name, figures in (parity.get("artifacts") or {}).items():
        try:
            # Rounded: 100 * (a - b) of two accuracies carries float error at the boundary.
            drops[name] = round(-float(figures["accuracy_change_points"]), 6)
            agreements[name] = float(figures["answer_agreement"])
        except (TypeError, KeyError, ValueError):
            continue
    drops = {name: drop for name, drop in drops.items() if name.endswith(".tflite")}
    within = sorted((sizes[name]["bytes"], name) for name, drop in drops.items()
                    if drop <= MAX_ACCURACY_DROP_POINTS
                    and isinstance(sizes.get(name), dict) and "bytes" in sizes[name])
    instead = (f"ship {within[0][1]} instead" if within else
               "no other .tflite file of this export stays within a point of it")
    sample = f" on {parity['questions']} {parity['split']} questions" if {
        "questions", "split"} <= set(parity) else ""
    return {name: f"{name} answers {drop:.2f} points below Keras{sample} (agrees on "
                  f"{agreements[name]:.2%} of the answers): {instead}"
            for name, drop in drops.items() if drop > MAX_ACCURACY_DROP_POINTS}


def check(model, export_dir, dataset, vocabulary, answers, quantizations, max_questions=None,
          log=print):
    """Parity figures of every artifact in `export_dir`, as a JSON-ready dict; `answers` are
    the model's answer labels (a run's `answers.json`), matched to the dataset's by name."""
    from keras_adahan import data
    from keras_adahan import evaluate

    from .exporter import SAVED_MODEL
    from .exporter import tflite_name

    arrays = _subset(
        data.question_arrays(dataset, dataset.spec.evaluation_split, vocabulary,
                             model.config.image_size,
                             model.config.max_question_length),
        max_questions,
    )
    arrays = evaluate.in_model_order(arrays, dataset, answers)
    split = dataset.spec.evaluation_split
    log(f"Checking parity on {len(arrays.answers)} {split} questions")
    keras_raw = evaluate.predict_split(model, arrays)
    reference = {"probabilities": softmax(keras_raw["answer"].astype(np.float64)),
                 "mask": keras_raw["mask"]}
    answers = arrays.answers
    report = {
        "split": split,
        "questions": int(len(answers)),
        "keras_accuracy": float(np.mean(reference["probabilities"].argmax(-1) == answers)),
        "artifacts": {},
    }
    report["artifacts"][SAVED_MODEL] = compare(
        reference, saved_model_outputs(os.path.join(export_dir, SAVED_MODEL), arrays), answers
    )
    for quantization in quantizations:
        start = time.time()
        one_call, split = tflite_outputs(os.path.join(export_dir, tflite_name(quantization)),
                                         arrays)
        figures = compare(reference, one_call, answers)
        agreement = compare(one_call, split, answers)
        figures["encode_answer_agreement"] = agreement["answer_agreement"]
        figures["encode_answer_max_probability_difference"] = agreement[
            "max_probability_difference"]
        report["artifacts"][tflite_name(quantization)] = figures
        log(f"  {tflite_name(quantization)}: answers agree with Keras on "
            f"{figures['answer_agreement']:.2%}, accuracy {figures['accuracy']:.2%} "
            f"({figures['accuracy_change_points']:+.2f} points) [{time.time() - start:.0f} s]")
    return report
