"""Tests of keras_adahan.predict on the exported tiny run (see conftest)."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from keras_adahan import data
from keras_adahan import run_files
from keras_adahan.export.litert_vqa import LiteRTVQA
from keras_adahan.predict import main
from keras_adahan.predict import predict
from keras_adahan.preprocessing import load_image

QUESTION = "What animal is near the hay?"


@pytest.fixture(scope="module")
def photos(exported_tiny_run, tmp_path_factory):
    """A tiny test image saved as RGB, RGBA (odd size), grayscale and palette PNGs."""
    dataset = data.prepare_dataset("tiny", exported_tiny_run["data_dir"], build=False)
    image = next(iter(dataset.elements("test").take(1).as_numpy_iterator()))["image"]
    folder = tmp_path_factory.mktemp("photos")
    rgb = Image.fromarray(image)
    paths = {"RGB": folder / "rgb.png", "RGBA": folder / "rgba.png",
             "L": folder / "gray.png", "P": folder / "palette.png"}
    rgb.save(paths["RGB"])
    rgb.convert("RGBA").resize((97, 61)).save(paths["RGBA"])
    rgb.convert("L").save(paths["L"])
    rgb.convert("P").save(paths["P"])
    (folder / "not_an_image.png").write_text("not a PNG")
    return {mode: str(path) for mode, path in paths.items()} | {
        "bad": str(folder / "not_an_image.png")}


def test_cli_answers_and_writes_overlay(exported_tiny_run, photos, tmp_path):
    model = os.path.join(exported_tiny_run["export_dir"], "vqa_int8.tflite")
    overlay = tmp_path / "overlay.png"
    result = subprocess.run(
        [sys.executable, "-m", "keras_adahan.predict", "--model", model,
         "--image", photos["RGBA"], "--question", QUESTION,
         "--question", "What animal is on top of the roof of the barn?",
         "--overlay", str(overlay)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    answers = run_files.read_json(os.path.join(exported_tiny_run["run_dir"], "answers.json"))
    lines = result.stdout.splitlines()
    assert lines[0] == f"Q: {QUESTION}"
    label, probability = lines[1].split()
    assert label in answers["answers"] and probability.endswith("%")
    assert sum(line.startswith("Q: ") for line in lines) == 2
    with Image.open(overlay) as image:
        # The 97x61 photo, enlarged x3 so the cells stay visible.
        assert image.size == (97 * 3, 61 * 3) and image.mode == "RGB"
    assert os.listdir(tmp_path) == ["overlay.png"]


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_any_image_mode_is_converted_as_in_training(exported_tiny_run, photos, mode):
    model = os.path.join(exported_tiny_run["export_dir"], "vqa_float32.tflite")
    results, vqa = predict(model, photos[mode], [QUESTION], top=4)
    assert len(results[0]["answers"]) == 4
    assert abs(sum(p for _, p in results[0]["answers"]) - 1) < 1e-4
    # Same as the one-call signature on the training conversion of the file.
    from keras_adahan.text import Vocabulary

    vocabulary = Vocabulary.load(os.path.join(exported_tiny_run["export_dir"], "vocabulary.json"))
    one_call = LiteRTVQA(model).predict(
        load_image(photos[mode], vqa.image_size),
        vocabulary.encode(QUESTION, vqa.max_question_length))
    np.testing.assert_allclose(
        sorted(p for _, p in results[0]["answers"]), sorted(one_call["probabilities"]),
        atol=1e-5)
    np.testing.assert_array_equal(results[0]["mask"], one_call["mask"])


@pytest.mark.parametrize("question, message", [
    ("", "has no words"),
    ("?!", "has no words"),
    ("zebra xylophone", "none of the words"),
])
def test_bad_question(exported_tiny_run, photos, question, message, tmp_path):
    model = os.path.join(exported_tiny_run["export_dir"], "vqa_int8.tflite")
    overlay = tmp_path / "overlay.png"
    with pytest.raises(SystemExit, match=f"^error: .*{message}"):
        main(["--model", model, "--image", photos["RGB"], "--question", question,
              "--overlay", str(overlay)])
    assert os.listdir(tmp_path) == []


def test_bad_files(exported_tiny_run, photos, tmp_path):
    export_dir = exported_tiny_run["export_dir"]
    model = os.path.join(export_dir, "vqa_int8.tflite")
    with pytest.raises(SystemExit, match="^error: .*is not a readable image file"):
        main(["--model", model, "--image", photos["bad"], "--question", QUESTION])
    with pytest.raises(SystemExit, match="^error: .*does not exist"):
        main(["--model", model, "--image", str(tmp_path / "missing.png"), "--question", QUESTION])
    with pytest.raises(SystemExit, match="^error: .*does not exist"):
        main(["--model", str(tmp_path / "missing.tflite"), "--image", photos["RGB"],
              "--question", QUESTION])
    # A model without labels.json beside it, and a file that is not a model.
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(model, lonely / "vqa.tflite")
    with pytest.raises(SystemExit, match="^error: no labels.json beside the model"):
        main(["--model", str(lonely / "vqa.tflite"), "--image", photos["RGB"],
              "--question", QUESTION])
    shutil.copy(os.path.join(export_dir, "labels.json"), lonely / "labels.json")
    (lonely / "vqa.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(SystemExit, match="^error: .*not a readable .tflite model"):
        main(["--model", str(lonely / "vqa.tflite"), "--image", photos["RGB"],
              "--question", QUESTION])
