"""Answers questions about a photo with an exported .tflite model (LiteRT, on-device path).

    python -m keras_adahan.predict --model artifacts/classic/vqa_int8.tflite --image photo.png \\
        --question "What animal is near the hay?" --question "What animal is on the roof?" \\
        --overlay attention.png

The image is encoded once (`encode` signature) and each question costs only the question
branch and the head (`answer` signature). The photo, of any size and mode, is converted by
`keras_adahan.preprocessing.load_image` and each question tokenized by
`keras_adahan.text.Vocabulary.encode`, exactly as in training. The words and answer labels
are read from `labels.json` beside the model (written by `python -m keras_adahan.export`).
`--overlay` writes the photo with the kept cells outlined and the others dimmed, each cell
drawn over the pixels it covers.
"""

import argparse
import json
import os
import sys

from keras_adahan import cli

LABELS = "labels.json"


def load_labels(model_path, labels_path=None):
    """The `labels.json` beside `model_path` (or at `labels_path`)."""
    path = labels_path or os.path.join(os.path.dirname(os.path.abspath(model_path)), LABELS)
    if not os.path.exists(path):
        raise ValueError(
            f"no {LABELS} beside the model ({path!r} does not exist); export the model "
            "with `python -m keras_adahan.export`, or pass --labels"
        )
    try:
        with open(path, encoding="utf-8") as f:
            labels = json.load(f)
        labels["words"], labels["answers"]  # noqa: B018  (both must be there)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path!r} is not a keras_adahan labels file ({error})") from None
    return labels


def load_model(model_path, num_threads=1):
    from keras_adahan.export.litert_vqa import LiteRTVQA

    if not os.path.isfile(model_path):
        raise ValueError(f"model file {model_path!r} does not exist")
    try:
        return LiteRTVQA(model_path, num_threads=num_threads)
    except ValueError as error:
        if "signature" in str(error):
            raise
        raise ValueError(f"{model_path!r} is not a readable .tflite model ({error})") from None
    except RuntimeError as error:
        raise ValueError(f"{model_path!r} is not a readable .tflite model ({error})") from None


def top_answers(probabilities, answers, top):
    order = probabilities.argsort()[::-1][:top]
    return [(answers[i], float(probabilities[i])) for i in order]


def draw_overlay(image_path, mask, presence, grid_size, path):
    """Writes the photo with kept cells outlined (the top-presence one thicker), others dimmed.

    Cell n covers `geometry.cell_boxes(grid_size)[n]` of the model's input, scaled here to
    the photo's own size (the model saw the photo resized to a square).
    """
    import numpy as np
    from PIL import Image
    from PIL import ImageDraw

    from keras_adahan import geometry
    from keras_adahan import run_files

    with Image.open(image_path) as photo:
        photo = photo.convert("RGBA")
    background = Image.new("RGBA", photo.size, (255, 255, 255, 255))
    photo = Image.alpha_composite(background, photo).convert("RGB")
    width, height = photo.size
    # Small photos are enlarged so the cell outlines stay visible.
    zoom = max(1, int(np.ceil(256 / max(width, height))))
    photo = photo.resize((width * zoom, height * zoom), Image.NEAREST)
    boxes = geometry.cell_boxes(grid_size) * np.array([photo.height, photo.width, photo.height, photo.width])
    kept = mask > 0.5
    shade = Image.new("L", photo.size, 150)  # Dims the cells that were dropped.
    shade_draw = ImageDraw.Draw(shade)
    for (ymin, xmin, ymax, xmax) in boxes[kept]:
        shade_draw.rectangle([xmin, ymin, xmax - 1, ymax - 1], fill=0)
    dark = Image.new("RGB", photo.size, (0, 0, 0))
    out = Image.composite(dark, photo, shade)
    draw = ImageDraw.Draw(out)
    top = int(np.argmax(np.where(kept, presence, -np.inf)))
    for index in np.flatnonzero(kept):
        ymin, xmin, ymax, xmax = boxes[index]
        width_px = 3 if index == top else 1
        draw.rectangle([xmin, ymin, xmax - 1, ymax - 1], outline=(255, 200, 0), width=width_px)
    with run_files.atomic_path(path) as tmp:
        out.save(tmp, format="PNG")


def predict(model_path, image_path, questions, top=3, labels_path=None, num_threads=1):
    """Answers `questions` about one image. Returns one dict per question.

    Raises `ValueError` with a message naming the bad input.
    """
    from keras_adahan.preprocessing import load_image
    from keras_adahan.text import Vocabulary

    if not questions:
        raise ValueError("give at least one --question")
    labels = load_labels(model_path, labels_path)
    vocabulary = Vocabulary(labels["words"])
    vqa = load_model(model_path, num_threads)
    # Every question is checked before the image is encoded.
    ids = [vocabulary.encode(q, vqa.max_question_length, require_known=True) for q in questions]
    image = load_image(image_path, vqa.image_size)
    cells = vqa.encode(image)  # Once per image ...
    results = []
    for question, question_ids in zip(questions, ids):
        out = vqa.answer(cells, question_ids)  # ... the head only per question.
        results.append({
            "question": question,
            "answers": top_answers(out["probabilities"], labels["answers"], top),
            "mask": out["mask"],
            "presence": out["presence"],
        })
    return results, vqa


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m keras_adahan.predict",
        description="Answer questions about an image with an exported .tflite VQA model.",
    )
    parser.add_argument("--model", required=True,
                        help="a .tflite file written by python -m keras_adahan.export")
    parser.add_argument("--image", required=True, help="an image file (any size and mode)")
    parser.add_argument("--question", action="append", required=True,
                        help="a question; repeat for several (the image is encoded once)")
    parser.add_argument("--top", type=int, default=3, help="answers to show per question")
    parser.add_argument("--overlay", default=None,
                        help="write the attention overlay (kept cells over the image) of the "
                             "first question to this PNG file")
    parser.add_argument("--labels", default=None,
                        help=f"the labels file (default: {LABELS} beside the model)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of LiteRT")
    parser.add_argument(cli.DEBUG_FLAG, action="store_true", help=cli.DEBUG_HELP)
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error(f"--top must be >= 1, received {args.top}")
    try:
        results, vqa = predict(args.model, args.image, args.question, args.top, args.labels,
                               args.threads)
        if args.overlay:
            first = results[0]
            draw_overlay(args.image, first["mask"], first["presence"], vqa.grid_size,
                         args.overlay)
    except (ValueError, OSError) as error:
        sys.exit(f"error: {error}")
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
    main()
