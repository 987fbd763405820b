"""Exports a trained run: SavedModel, four .tflite files, labels and a parity report.

    OUTPUT_DIR/
      model.keras                the run's Keras model (keras.models.load_model)
      vocabulary.json, answers.json, config.json
                                 the run's files: `load_run(OUTPUT_DIR)` works too
      saved_model/               SavedModel; signatures serving_default (= vqa), vqa,
                                 encode, answer; dynamic batch
      vqa_float32.tflite         signatures vqa (runs encode, then answer), encode, answer;
                                 batch 1; builtin ops only
      vqa_float16.tflite
      vqa_dynamic_range.tflite
      vqa_int8.tflite            int8 image input (scale 1, zero point -128)
      labels.json                what an app needs: words, answers, sizes, tokenizer
      export_report.json         sizes, ops, parity on the test split

The folder is built under a temporary name beside OUTPUT_DIR and swapped into place when
everything succeeded (`keras_adahan.folders`): a failed export leaves the old folder as it
was, a killed one leaves a staging folder that the next export to OUTPUT_DIR removes, and
--overwrite replaces only an export folder of this project, never the run it exports.
"""

import hashlib
import os
import shutil
import time

import numpy as np

from keras_adahan import cli
from keras_adahan import folders
from keras_adahan import run_files
from keras_adahan.layers import ConvAveragePool2D
from keras_adahan.model import SplitAnswerHead
from keras_adahan.predict import LABELS
from keras_adahan.predict import REPORT
from keras_adahan.predict import labels_fingerprint

from . import serving
from . import tflite
from . import tflite_edits
from .tflite import ExportError

SAVED_MODEL = "saved_model"
FORMAT = "keras_adahan.export/4"  # 2: labels.json has a fingerprint; 3: cells (G,G,P); 4: cell_edges.


def tflite_name(quantization):
    return f"vqa_{quantization}.tflite"


def export(
    run_dir_or_model,
    output_dir,
    quantizations=tflite.QUANTIZATIONS,
    calibration_steps=100,
    data_dir=None,
    parity=True,
    max_parity_questions=None,
    overwrite=False,
    log=print,
):
    """Exports a run folder (or its `model.keras`) into `output_dir`.

    Args:
        run_dir_or_model: str. A run folder of `keras_adahan.train`, or its model.keras.
        output_dir: str. Created; must not exist or be empty unless `overwrite`.
        quantizations: tuple of str. Which .tflite files to write (`tflite.QUANTIZATIONS`).
        calibration_steps: int. Training images the int8 model is calibrated on; each
            brings all its questions.
        data_dir: str or `None`. TFDS folder of the run's dataset (calibration and
            parity). Defaults to the run's `config.json` "train" "data_dir".
        parity: bool. Compare every artifact with Keras on the test split.
        max_parity_questions: int or `None`. Use only the first questions of the test
            split (`None`: all).
        overwrite: bool. Replace an existing, non-empty `output_dir`.
        log: callable. Progress messages.

    Returns:
        The report (also written to `export_report.json`).

    Raises:
        ExportError: with a message saying what is wrong; nothing is left in or beside
            `output_dir`.
    """
    check_backend()
    unknown = [q for q in quantizations if q not in tflite.QUANTIZATIONS]
    if unknown or not quantizations:
        raise ExportError(
            f"quantizations must be among {', '.join(tflite.QUANTIZATIONS)}, received "
            f"{', '.join(quantizations) or 'none'}"
        )
    if isinstance(calibration_steps, bool) or int(calibration_steps) < 1:
        raise ExportError(f"--calibration_steps must be >= 1, received {calibration_steps}")
    output_dir = os.path.abspath(output_dir)
    try:
        folders.check_creatable(output_dir, "--output_dir")
    except cli.UserError as error:
        raise ExportError(str(error)) from None
    if not folders.is_empty(output_dir) and not overwrite:
        raise ExportError(
            f"the output folder {output_dir!r} is not empty; pass --overwrite to replace it "
            "or choose another --output_dir"
        )
    run_lock = None
    try:
        run_dir = run_files.run_folder_of(run_dir_or_model)
        # Replaced only if it is an export folder of ours, and never the run it comes from.
        folders.check_replaceable(output_dir, "export", "--output_dir", protect=[run_dir])
        if os.path.isfile(os.path.join(run_dir, run_files.CONFIG)):  # A run's, not a user's.
            # Held until the end: a trainer finishing a --resume of the run meanwhile would
            # leave the export a model.keras other than the one its files were made from.
            # Shared: exports of one run, which only read it, do not wait for each other.
            run_lock = folders.FolderLock(run_dir, advice="wait for it to finish", shared=True)
        run = run_files.load_run(run_dir_or_model)
    except (FileNotFoundError, ValueError, cli.UserError) as error:
        if run_lock is not None:
            run_lock.release()
        raise ExportError(str(error)) from None
    try:
        return _export_run(run, run_dir, output_dir, quantizations, calibration_steps,
                           data_dir, parity, max_parity_questions, log)
    finally:
        if run_lock is not None:
            run_lock.release()


def _export_run(run, run_dir, output_dir, quantizations, calibration_steps, data_dir, parity,
                max_parity_questions, log):
    model = run.model
    fold_for_export(model)

    dataset = None
    if "int8" in quantizations or parity:
        dataset = _prepared_dataset(run, data_dir)
    if parity:  # Named before anything is converted: parity matches the answers by name.
        from keras_adahan.evaluate import model_answer_labels

        try:
            model_answer_labels(dataset.answer_names, run.answers, dataset.spec.title)
        except ValueError as error:
            raise ExportError(f"{error}, or pass --skip_parity") from None
    calibration = None
    if "int8" in quantizations:
        log(f"Loading {calibration_steps} training images of {dataset.spec.title} to "
            "calibrate the int8 model")
        calibration = calibration_samples(model, dataset, run.vocabulary, calibration_steps)

    parent, name = os.path.split(output_dir)
    os.makedirs(parent, exist_ok=True)
    with folders.staged(output_dir, "export") as staging:
        scratch = os.path.join(staging, ".tmp-scratch")  # Inside: cleaned with the staging.
        os.makedirs(scratch)
        _copy_run_files(run_dir, staging)

        start = time.time()
        log("Writing the SavedModel (signatures serving_default = vqa, encode, answer)")
        serving.serving_archive(model).write_out(
            os.path.join(staging, SAVED_MODEL), verbose=False
        )
        # TFLite from batch-1 signatures: static shapes, no shape arithmetic in the graph;
        # the question RNN as a loop, not unrolled: a much smaller file (serving.rolled_rnns).
        batch_one = os.path.join(scratch, "batch_one")
        with serving.rolled_rnns(model):
            serving.serving_archive(model, batch_size=1).write_out(batch_one, verbose=False)
        artifacts = {SAVED_MODEL: {"bytes": _folder_bytes(os.path.join(staging, SAVED_MODEL))}}
        for quantization in quantizations:
            log(f"Converting to TFLite, {quantization}"
                + (f" (calibrating on {calibration.num_images} images, "
                   f"{calibration.num_questions} questions)" if quantization == "int8" else ""))
            flatbuffer = tflite.convert(
                batch_one, serving.SIGNATURES, quantization,
                representative_dataset=calibration.dataset if quantization == "int8" else None,
                float_layers=tflite.float_layers_in_int8(model),
            )
            # One copy of the graph: `vqa` runs the `encode` and `answer` subgraphs.
            flatbuffer = tflite_edits.vqa_calls_encode_and_answer(flatbuffer)
            path = os.path.join(staging, tflite_name(quantization))
            with open(path, "wb") as f:
                f.write(flatbuffer)
            ops, custom = tflite.op_names(flatbuffer)
            artifacts[tflite_name(quantization)] = {
                "bytes": len(flatbuffer), "sha256": hashlib.sha256(flatbuffer).hexdigest(),
                "quantization": quantization,
                "ops": ops, "custom_ops": custom,
            }
            if quantization == "int8":
                artifacts[tflite_name(quantization)]["float_layers"] = list(
                    tflite.float_layers_in_int8(model))
        log(f"  converted in {time.time() - start:.0f} s")
        labels = labels_dict(run)
        # Which files these labels belong to: predict refuses them beside another model.
        labels["model_sha256"] = {
            tflite_name(q): artifacts[tflite_name(q)]["sha256"] for q in quantizations}
        labels["fingerprint"] = labels_fingerprint(labels)
        run_files.write_json(os.path.join(staging, LABELS), labels)

        report = {
            "format": FORMAT,
            "source": os.path.abspath(run_dir),
            "variant": run.config.get("model", {}).get("variant"),
            "image_size": model.config.image_size,
            "max_question_length": model.config.max_question_length,
            "num_cells": model.config.num_cells,
            "num_parameters": int(model.count_params()),
            "calibration": None if calibration is None else {
                "images": calibration.num_images, "questions": calibration.num_questions,
                "split": "train", "dataset": run.config["train"]["dataset"],
            },
            "artifacts": artifacts,
        }
        if parity:
            from . import parity as parity_module

            report["parity"] = parity_module.check(
                model, staging, dataset, run.vocabulary, run.answers, quantizations,
                max_questions=max_parity_questions, log=log,
            )
        run_files.write_json(os.path.join(staging, REPORT), report)
        shutil.rmtree(scratch)
    log(f"Exported to {output_dir}")
    return report


def check_backend():
    """Raises `ExportError` unless Keras runs on TensorFlow: the SavedModel and the TFLite
    converter trace TensorFlow graphs."""
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ExportError(
            f"export needs the TensorFlow backend, this process runs Keras on "
            f"{keras.backend.backend()!r}: run it with KERAS_BACKEND=tensorflow (a .keras "
            "model trained on any backend exports)")


def fold_for_export(model):
    """Freezes computed kernels into constants (export only: the model trains no more), so
    the int8 quantizer treats them as weights; a computed kernel gets an activation's zero
    point, which LiteRT's int8 CONV_2D refuses."""
    for layer in model.get_layer("image_encoder").layers:
        if isinstance(layer, ConvAveragePool2D):
            layer.fold()
    return model


def _prepared_dataset(run, data_dir):
    from keras_adahan import data

    try:
        return data.run_dataset(run, data_dir)
    except (FileNotFoundError, ValueError) as error:
        raise ExportError(
            f"{error}. The int8 calibration and the parity check read it; pass --data_dir, "
            "or skip them with --quantizations float32,float16,dynamic_range --skip_parity"
        ) from None


def _copy_run_files(run_dir, destination):
    for name in (run_files.MODEL, run_files.VOCABULARY, run_files.ANSWERS, run_files.CONFIG):
        shutil.copyfile(os.path.join(run_dir, name), os.path.join(destination, name))


def _folder_bytes(path):
    return sum(os.path.getsize(os.path.join(parent, name))
               for parent, _, names in os.walk(path) for name in names)


def labels_dict(run):
    """What an app needs beside the .tflite file to ask questions and read answers."""
    config = run.model.config
    return {
        "format": FORMAT,
        "words": list(run.vocabulary.words),
        "answers": list(run.answers),
        "image_size": config.image_size,
        "max_question_length": config.max_question_length,
        "grid_size": config.grid_size,
        "cell_edges": [float(edge) for edge in run.model.cell_edges],
        "num_cells": config.num_cells,
        "cells_shape": list(serving.cells_shape(run.model)),
        "tokenizer": (
            "NFC-normalize and lower-case the question, take its runs of letters, digits and "
            "combining marks of any script (regex [\\p{L}\\p{N}\\p{M}]+, Unicode general "
            "categories: 'Où' and 'कौन' are one word each; '_' and every other character "
            "separate words), map word i of "
            "`words` to id i + 2 and any other word to 1, left-pad with 0 to "
            "max_question_length (keras_adahan.text.Vocabulary.encode)"
        ),
        "image": (
            "rotated upright by its EXIF orientation, RGB (16-bit grayscale divided by 257), "
            "transparent areas over white, resized to image_size x image_size by "
            "area averaging and rounded, float pixel values 0..255 "
            "(keras_adahan.preprocessing.load_image); int8 models: quantize with the "
            "input's scale and zero point"
        ),
        "cells": (
            "cell n = i * grid_size + j covers rows [cell_edges[i], cell_edges[i+1]) and "
            "columns [cell_edges[j], cell_edges[j+1]) of the image, times image_size "
            "(keras_adahan.geometry.cell_edges)"
        ),
        "signatures": {
            "vqa": "image (1,S,S,3), question (1,L) int32 -> probabilities (1,A), "
                   "mask (1,N), presence (1,N)",
            "encode": "image (1,S,S,3) -> cells (1,G,G,P), the encoded image",
            "answer": "cells (1,G,G,P), question (1,L) int32 -> probabilities, mask, presence",
        },
    }


class Calibration:
    """Representative inputs of the three signatures, from training images and questions."""

    def __init__(self, images, questions, cells):
        self.images = images  # uint8 (M, S, S, 3)
        self.questions = questions  # M int32 arrays (Q_m, L): each image's questions
        self.cells = cells  # float32 (M, G, G, P): the `encode` signature's output in Keras
        self.num_images = len(images)
        self.num_questions = sum(len(asked) for asked in questions)

    def dataset(self):
        for image, questions, cells in zip(self.images, self.questions, self.cells):
            image = image[None].astype(np.float32)
            yield "encode", {"image": image}
            for question in questions:
                question = question[None]
                yield "vqa", {"image": image, "question": question}
                yield "answer", {"cells": cells[None], "question": question}


def calibration_samples(model, dataset, vocabulary, num_images):
    """`num_images` training images with all their questions, and their encoded cells."""
    from keras_adahan import data

    batches = data.training_batches(
        dataset, "train", vocabulary, model.config.image_size,
        model.config.max_question_length, batch_size=1,
    ).take(num_images)
    images, questions = [], []
    for inputs, *_ in batches.as_numpy_iterator():  # (inputs, answers[, weights])
        images.append(inputs["image"][0].astype(np.uint8))
        asked = inputs["questions"][0]  # Padded to the most questions an image has (CLEVR,
        questions.append(asked[asked.any(axis=1)])  # folders): all-padding rows dropped.
    images = np.stack(images)
    # The int8 image input then gets the range 0..255 exactly (scale 1, zero point -128),
    # so whole pixel values quantize without rounding, whatever the scenes' darkest and
    # brightest pixels are. Two pixels of one image: no effect on the other ranges.
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    encoder = model.get_layer("image_encoder")
    split_head = SplitAnswerHead(model)
    cells = np.concatenate([
        np.asarray(split_head.encode_cells(
            encoder.predict_on_batch(images[i:i + 64].astype(np.float32))))
        for i in range(0, len(images), 64)
    ])
    return Calibration(images, questions, cells)


def format_report(report):
    """The report as a table: one row per artifact."""
    parity = report.get("parity", {}).get("artifacts", {})
    lines = []
    if "parity" in report:
        parity_report = report["parity"]
        lines.append(f"Parity on {parity_report['questions']} {parity_report['split']} "
                     "questions; Keras "
                     f"accuracy {report['parity']['keras_accuracy']:.2%}")
    header = (f"{'artifact':<26}{'size':>10}  {'agree':>8}{'accuracy':>10}{'change':>9}"
              f"{'max|dp|':>10}{'masks':>8}  ops")
    lines += [header, "-" * len(header)]
    for name, artifact in report["artifacts"].items():
        figures = parity.get(name)
        row = f"{name:<26}{_size(artifact['bytes']):>10}  "
        if figures:
            row += (f"{figures['answer_agreement']:>8.2%}{figures['accuracy']:>10.2%}"
                    f"{figures['accuracy_change_points']:>+9.2f}"
                    f"{figures['max_probability_difference']:>10.4f}"
                    f"{figures['mask_agreement']:>8.2%}")
        else:
            row += " " * 45
        if "ops" in artifact:
            ops = sorted({op for names in artifact["ops"].values() for op in names})
            row += f"  {len(ops)} builtin: {', '.join(ops)}"
        lines.append(row)
    from . import parity as parity_module  # Numpy and LiteRT only.

    return "\n".join(lines + [f"Warning: {message}"
                              for message in parity_module.warnings_for(report).values()])


def _size(num_bytes):
    return f"{num_bytes / 1024:.1f} KB" if num_bytes < 1024**2 else f"{num_bytes / 1024**2:.2f} MB"
