"""Answers questions about a photo with an exported .tflite model (LiteRT, on-device path).

    python -m keras_adahan.predict --model artifacts/classic/vqa_int8.tflite --image photo.png \\
        --question "What animal is near the hay?" --question "What animal is on the roof?" \\
        --overlay attention.png

The image is encoded once (`encode` signature) and each question costs only the question
branch and the head (`answer` signature). The photo, of any size and mode, is converted by
`keras_adahan.preprocessing.load_image` and each question tokenized by
`keras_adahan.text.Vocabulary.encode`, as in training (a `folder:` dataset's images were
also stored as JPEG: docs/export.md). The words and answer labels
are read from `labels.json` beside the model (written by `python -m keras_adahan.export`).
`--overlay` writes the photo with the kept cells outlined and the others dimmed, each cell
drawn over the pixels it covers.
"""

import hashlib
import json
import os
import warnings

import numpy as np

from keras_adahan import cli

LABELS = "labels.json"
REPORT = "export_report.json"
OVERLAY_MARK = "keras_adahan_overlay"  # A PNG text key marking the overlays this tool writes.
MAX_REPORT_BYTES = 10 * 2**20  # A report is a few KB.


class UnknownWordsWarning(UserWarning):
    """A question was answered with some of its words unknown to the model."""


class ParityWarning(UserWarning):
    """The export measured this .tflite file answering below the Keras model."""


def warn_if_below_keras(model_path, vqa, labels, labels_path):
    """Warns when the export report beside `labels_path` (the labels `check_labels` matched
    to this file) measured this file answering more than a point below Keras, e.g. the int8
    file of a fragile model. The file is found by its hash, whatever it is called now."""
    from keras_adahan.export import parity

    path = os.path.join(os.path.dirname(os.path.abspath(labels_path)), REPORT)
    try:
        names = [name for name, digest in labels["model_sha256"].items() if digest == vqa.sha256]
        if os.path.getsize(path) > MAX_REPORT_BYTES:
            return  # Not a report of ours (a few KB): not read.
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
        artifact = report["artifacts"][names[0]]
        if artifact.get("sha256", vqa.sha256) != vqa.sha256 or (  # Reports before 2026-12-05:
                artifact["bytes"] != os.path.getsize(model_path)):  # no hashes, sizes only.
            return  # The report of another export.
        message = parity.warnings_for(report).get(names[0])
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            RecursionError):
        return  # No report, or not one of this file: nothing measured to warn of.
    if message:
        warnings.warn(f"{message} (measured at export: {path})", ParityWarning, stacklevel=3)


def labels_path_of(model_path, labels_path=None):
    return labels_path or os.path.join(os.path.dirname(os.path.abspath(model_path)), LABELS)


def load_labels(model_path, labels_path=None):
    """The `labels.json` beside `model_path` (or at `labels_path`)."""
    path = labels_path_of(model_path, labels_path)
    if not os.path.exists(path):
        raise ValueError(
            f"no {LABELS} beside the model ({path!r} does not exist); export the model "
            "with `python -m keras_adahan.export`, or pass --labels"
        )
    if not os.path.isfile(path):
        raise ValueError(f"{path!r} is not a regular file")
    try:
        with open(path, encoding="utf-8") as f:
            labels = json.load(f)
        strings = lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)  # noqa: E731
        if not (isinstance(labels, dict) and strings(labels["words"])
                and strings(labels["answers"])
                and len(set(labels["answers"])) == len(labels["answers"])):
            raise TypeError("`words` and `answers` must be lists of strings, answers distinct")
        for key in ("image_size", "max_question_length", "num_cells"):
            if key in labels and (not isinstance(labels[key], int) or isinstance(labels[key], bool)):
                raise TypeError(f"`{key}` must be an int")
        edges = labels.get("cell_edges", [0.0, 1.0])
        try:
            increasing = bool(np.all(np.diff(np.array(edges, dtype=np.float64)) > 0))
        except (ValueError, TypeError, OverflowError):  # Text, nested lists, 10**400.
            increasing = False
        if not (increasing and isinstance(edges, list) and len(edges) >= 2
                and all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in edges)
                and edges[0] == 0 and edges[-1] == 1):
            raise TypeError("`cell_edges` must be increasing numbers from 0 to 1")
        hashes = labels.get("model_sha256", {})
        if not isinstance(hashes, dict) or not all(isinstance(v, str) for v in hashes.values()):
            raise TypeError("`model_sha256` must map file names to hashes")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path!r} is not a keras_adahan labels file ({error})") from None
    if "fingerprint" in labels or labels.get("format") != "keras_adahan.export/1":
        if labels.get("fingerprint") != labels_fingerprint(labels):
            raise ValueError(f"{path!r} is not the labels file its export wrote (edited or "
                             "damaged): its answers or words could be in another order")
    return labels


def labels_fingerprint(labels):
    """A hash of everything in `labels` but itself: what `export` wrote, unedited."""
    content = {key: value for key, value in labels.items() if key != "fingerprint"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()


def check_labels(labels, vqa, labels_path):
    """Raises `ValueError` unless `labels` fit the model: its answers, image and question
    sizes, and cells (a labels.json of another model would answer with wrong names)."""
    expected = {
        "answers": (len(labels["answers"]), int(vqa.outputs["vqa"]["probabilities"]["shape"][-1])),
        "image_size": (labels.get("image_size", vqa.image_size), vqa.image_size),
        "max_question_length": (labels.get("max_question_length", vqa.max_question_length),
                                vqa.max_question_length),
        "num_cells": (labels.get("num_cells", vqa.num_cells), vqa.num_cells),
        "cell edges": (len(cell_edges(labels, vqa)), vqa.grid_size + 1),
    }
    wrong = [f"{name} {given} (the model's: {actual})"
             for name, (given, actual) in expected.items() if given != actual]
    known = labels.get("model_sha256")
    if known and vqa.sha256 not in known.values():
        wrong.append(f"it was exported with {', '.join(sorted(known))}, not this file")
    if wrong:
        raise ValueError(f"{labels_path!r} does not fit the model: {', '.join(wrong)}; use "
                         "the labels.json exported with it")


def cell_edges(labels, vqa):
    """The model's `(G + 1,)` normalized cell edges from its labels; the even split for
    labels exported before they held them (format 3 and older)."""
    if "cell_edges" in labels:
        return np.array(labels["cell_edges"], dtype=np.float64)
    from keras_adahan import geometry

    return geometry.even_edges(vqa.grid_size)


def load_model(model_path, num_threads=1):
    from keras_adahan.export.litert_vqa import LiteRTVQA

    if not os.path.exists(model_path):
        raise ValueError(f"model file {model_path!r} does not exist")
    if not os.path.isfile(model_path):
        raise ValueError(f"model file {model_path!r} is not a regular file (a .tflite file "
                         "written by python -m keras_adahan.export)")
    if os.path.getsize(model_path) == 0:
        raise ValueError(f"model file {model_path!r} is empty (expected a .tflite file "
                         "written by python -m keras_adahan.export)")
    return LiteRTVQA(model_path, num_threads=num_threads)


def top_answers(probabilities, answers, top):
    order = probabilities.argsort()[::-1][:top]
    return [(answers[i], float(probabilities[i])) for i in order]


def draw_overlay(image_path, mask, presence, edges, path):
    """Writes the photo with kept cells outlined (the top-presence one thicker), others dimmed.

    Cell n covers `geometry.cell_boxes(G, edges=edges)[n]` of the model's input (`edges`:
    `cell_edges` of its labels), scaled here to the photo's own size (the model saw the
    photo resized to a square).
    """
    from PIL import Image
    from PIL import ImageDraw
    from PIL import PngImagePlugin

    from keras_adahan import geometry
    from keras_adahan import preprocessing
    from keras_adahan import run_files

    # Read as the model read it (upright, 16-bit scaled, transparency on white); a large
    # photo reduced while read, its short side kept at 512 pixels or more.
    with warnings.catch_warnings():  # An animated photo was named when it was answered.
        warnings.simplefilter("ignore", preprocessing.ImageWarning)
        photo = Image.fromarray(preprocessing.read_rgb(image_path, min_side=512))
    width, height = photo.size
    # Small photos are enlarged so the cell outlines stay visible.
    zoom = max(1, int(np.ceil(256 / max(width, height))))
    photo = photo.resize((width * zoom, height * zoom), Image.NEAREST)
    boxes = geometry.cell_boxes(len(edges) - 1, edges=edges) * np.array(
        [photo.height, photo.width, photo.height, photo.width])
    kept = mask > 0.5
    shade = Image.new("L", photo.size, 150)  # Dims the cells that were dropped.
    shade_draw = ImageDraw.Draw(shade)
    for (ymin, xmin, ymax, xmax) in boxes[kept]:
        shade_draw.rectangle([xmin, ymin, xmax - 1, ymax - 1], fill=0)
    dark = Image.new("RGB", photo.size, (0, 0, 0))
    out = Image.composite(dark, photo, shade)
    draw = ImageDraw.Draw(out)
    top = int(geometry.top_kept_cell(presence, mask))
    for index in np.flatnonzero(kept):
        ymin, xmin, ymax, xmax = boxes[index]
        width_px = 3 if index == top else 1
        draw.rectangle([xmin, ymin, xmax - 1, ymax - 1], outline=(255, 200, 0), width=width_px)
    marked = PngImagePlugin.PngInfo()
    marked.add_text(OVERLAY_MARK, "1")  # So a later --overlay may replace it (check_overlay).
    with run_files.atomic_path(path) as tmp:
        out.save(tmp, format="PNG", pnginfo=marked)


def check_overlay(path, inputs):
    """Raises `ValueError` unless `path` may be written: not one of the command's `inputs`,
    and, if it exists, an overlay this command wrote before (never a user's file)."""
    from PIL import Image

    for given in inputs:
        if given and os.path.exists(given) and os.path.realpath(given) == os.path.realpath(path):
            raise ValueError(f"--overlay {path!r} is an input of this command; choose another file")
    if not path.lower().endswith(".png"):
        raise ValueError(f"--overlay {path!r} must end in .png: the overlay is a PNG file")
    if os.path.lexists(path):
        try:
            with Image.open(path) as image:
                ours = image.format == "PNG" and OVERLAY_MARK in image.info
        except (OSError, ValueError, Image.DecompressionBombError):
            ours = False
        if not ours or os.path.islink(path):
            raise ValueError(f"--overlay {path!r} exists and is not an overlay this tool wrote; "
                             "choose a new file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"--overlay {path!r}: the folder {folder!r} does not exist")


def predict(model_path, image_path, questions, top=3, labels_path=None, num_threads=1,
            strict=False):
    """Answers `questions` about one image. Returns one dict per question: its `answers`
    (the `top` answers with their probabilities), `mask` and `presence` of the cells, and
    the `cell_edges` they lie between (from the labels).

    A question with words the model does not know is answered (they read as "unknown"),
    with a warning naming them; with `strict`, it is an error.

    Raises `ValueError` with a message naming the bad input.
    """
    from keras_adahan.preprocessing import load_image
    from keras_adahan.text import Vocabulary

    if isinstance(questions, str):
        questions = [questions]  # One question, not one per character.
    if not questions:
        raise ValueError("give at least one --question")
    vqa = load_model(model_path, num_threads)
    labels = load_labels(model_path, labels_path)
    labels_file = labels_path_of(model_path, labels_path)
    check_labels(labels, vqa, labels_file)
    edges = cell_edges(labels, vqa)
    try:
        vocabulary = Vocabulary(labels["words"])
    except ValueError as error:
        raise ValueError(f"{labels_file!r} does not fit the model: {error}") from None
    warn_if_below_keras(model_path, vqa, labels, labels_file)
    # Every question is checked before the image is encoded.
    ids = [vocabulary.encode(q, vqa.max_question_length, require_known=True) for q in questions]
    for question in questions:
        unknown = vocabulary.unknown_words(question)
        if unknown and strict:
            raise ValueError(f"the question {question!r} has words this model does not know: "
                             f"{', '.join(unknown)} (drop --strict to answer it anyway)")
        if unknown:
            warnings.warn(f"the question {question!r} has words this model does not know, "
                          f"read as unknown: {', '.join(unknown)}", UnknownWordsWarning,
                          stacklevel=2)
    image = load_image(image_path, vqa.image_size)
    cells = vqa.encode(image)  # Once per image ...
    results = []
    for question, question_ids in zip(questions, ids):
        out = vqa.answer(cells, question_ids)  # ... the head only per question.
        if not np.isfinite(out["probabilities"]).all():
            raise ValueError(f"{model_path!r} answered {question!r} with non-finite "
                             "probabilities (NaN): the model file is damaged or its weights "
                             "diverged; export it again from a healthy run")
        results.append({
            "question": question,
            "answers": top_answers(out["probabilities"], labels["answers"], top),
            "mask": out["mask"],
            "presence": out["presence"],
            "cell_edges": edges,
        })
    return results, vqa


def main(argv=None):
    parser = cli.ArgumentParser(
        prog="python -m keras_adahan.predict",
        description="Answer questions about an image with an exported .tflite VQA model.",
    )
    parser.add_argument("--model", required=True, type=cli.file_path,
                        help="a .tflite file written by python -m keras_adahan.export")
    parser.add_argument("--image", required=True, type=cli.file_path,
                        help="an image file (any size and mode)")
    parser.add_argument("--question", action="append", required=True,
                        help="a question; repeat for several (the image is encoded once)")
    parser.add_argument("--top", type=cli.positive_int, default=3,
                        help="answers to show per question")
    parser.add_argument("--overlay", default=None, type=cli.file_path,
                        help="write the attention overlay (kept cells over the image) of the "
                             "first question to this PNG file")
    parser.add_argument("--labels", default=None, type=cli.file_path,
                        help=f"the labels file (default: {LABELS} beside the model)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of LiteRT")
    parser.add_argument("--strict", action="store_true",
                        help="refuse a question with words the model does not know (by "
                             "default it is answered, with a warning naming them)")
    args = parser.parse_args(argv)
    if not 1 <= args.threads <= 256:
        parser.error(f"--threads must be in [1, 256], received {args.threads}")
    try:
        if args.overlay:  # Before anything runs: a user's file is never replaced.
            check_overlay(args.overlay, [args.image, args.model, args.labels,
                                         labels_path_of(args.model, args.labels)])
        results, vqa = predict(args.model, args.image, args.question, args.top, args.labels,
                               args.threads, strict=args.strict)
        if args.overlay:
            first = results[0]
            draw_overlay(args.image, first["mask"], first["presence"], first["cell_edges"],
                         args.overlay)
    except (ValueError, OSError) as error:
        raise cli.UserError(str(error)) from None
    for result in results:
        print(f"Q: {result['question']}")
        for answer, probability in result["answers"]:
            print(f"  {answer:<12} {probability:7.2%}")
        kept = int((result["mask"] > 0.5).sum())
        print(f"  (looked at {kept} of {len(result['mask'])} cells)")
    if args.overlay:
        print(f"Attention overlay of the first question: {args.overlay}")
    return results


if __name__ == "__main__":
    cli.run(main)
