"""Tests of keras_adahan.predict on the exported tiny run (see conftest)."""

import json
import os
import shutil
import struct
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_adahan import data
from keras_adahan import run_files
from keras_adahan.predict import ParityWarning
from keras_adahan.predict import main
from keras_adahan.predict import predict

QUESTION = "What animal is near the hay?"
ROOF_QUESTION = "What animal is on top of the roof of the barn?"


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


@pytest.fixture(scope="module")
def keras_run(exported_tiny_run):
    return run_files.load_run(exported_tiny_run["run_dir"])


def _model_image(path, size):
    """The photo as the model's input, built here: over white, area-resized, rounded."""
    with Image.open(path) as image:
        rgba = np.asarray(image.convert("RGBA"), np.float32)
    alpha = rgba[..., 3:] / 255.0
    rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
    return np.round(tf.image.resize(rgb, (size, size), method="area").numpy())


def _keras_answer(run, path, question):
    """`({label: probability}, mask)` of the run's Keras model for one photo and question."""
    config = run.model.config
    out = run.model.predict_on_batch({
        "image": _model_image(path, config.image_size)[None],
        "question": run.vocabulary.encode(question, config.max_question_length)[None]})
    logits = np.asarray(out["answer"][0], np.float64)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    return dict(zip(run.answers, probabilities)), np.asarray(out["mask"][0])


def test_cli_answers_and_writes_overlay(exported_tiny_run, keras_run, photos, tmp_path):
    model = os.path.join(exported_tiny_run["export_dir"], "vqa_int8.tflite")
    overlay = tmp_path / "overlay.png"
    result = subprocess.run(
        [sys.executable, "-m", "keras_adahan.predict", "--model", model,
         "--image", photos["RGBA"], "--question", QUESTION,
         "--question", ROOF_QUESTION,
         "--overlay", str(overlay)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Q: {QUESTION}"
    assert sum(line.startswith("Q: ") for line in lines) == 2
    # Each question's top answer is the Keras model's for the same photo and question, and
    # the 3 answers shown carry that model's probabilities (int8: within 5 points).
    for question in (QUESTION, ROOF_QUESTION):
        first = lines.index(f"Q: {question}") + 1
        shown = [line.split() for line in lines[first:first + 3]]
        probabilities, _ = _keras_answer(keras_run, photos["RGBA"], question)
        assert shown[0][0] == max(probabilities, key=probabilities.get), (question, shown)
        for label, percent in shown:
            assert percent.endswith("%")
            assert float(percent[:-1]) / 100 == pytest.approx(probabilities[label], abs=0.05), (
                question, label)
    with Image.open(overlay) as image:
        # The 97x61 photo, enlarged x3 so the cells stay visible.
        assert image.size == (97 * 3, 61 * 3) and image.mode == "RGB"
    assert os.listdir(tmp_path) == ["overlay.png"]


def test_overlay_shows_the_photo_as_the_model_read_it(exported_tiny_run, photos, tmp_path):
    model = os.path.join(exported_tiny_run["export_dir"], "vqa_float32.tflite")
    with Image.open(photos["RGB"]) as image:
        upright = image.resize((97, 61))
    # Stored sideways with an EXIF turn (a phone's photo), and as 16-bit grayscale.
    sideways, deep = tmp_path / "sideways.jpg", tmp_path / "deep.png"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: turn 90 degrees clockwise to show.
    upright.transpose(Image.Transpose.ROTATE_90).save(sideways, exif=exif, quality=95)
    gray = np.asarray(upright.convert("L"), np.uint16) * 257
    Image.fromarray(gray).save(deep)
    assert Image.open(deep).mode == "I;16"
    for photo in (sideways, deep):
        overlay = tmp_path / f"overlay-{photo.stem}.png"
        main(["--model", model, "--image", str(photo), "--question", QUESTION,
              "--overlay", str(overlay)])
        with Image.open(overlay) as image:
            # Upright, 97x61 enlarged x3 (it was 61x97: the photo as stored).
            assert image.size == (97 * 3, 61 * 3), photo
            pixels = np.asarray(image.convert("L"), np.float64)
        # The photo's own pixels, dimmed or not, under the outlines (16-bit: it was a flat
        # grey ground with the outlines only).
        shown = np.asarray(upright.convert("L").resize((97 * 3, 61 * 3), Image.NEAREST),
                           np.float64)
        assert np.corrcoef(pixels.ravel(), shown.ravel())[0, 1] > 0.5, photo


def test_overlay_draws_the_cells_of_the_labels(exported_tiny_run, photos, tmp_path):
    from keras_adahan.predict import draw_overlay

    # Uneven cells, as labels.json's cell_edges give them: cell 0 (kept) is the top-left
    # 0.75 x 0.75 of the photo; the three others are dropped and dimmed.
    with Image.open(photos["RGB"]) as image:
        photo = tmp_path / "white.png"
        Image.new("RGB", image.size, (255, 255, 255)).save(photo)
        width, height = image.size
    overlay = tmp_path / "overlay.png"
    draw_overlay(str(photo), np.array([1.0, 0, 0, 0]), np.array([1.0, 0, 0, 0]),
                 np.array([0, 0.75, 1]), str(overlay))
    with Image.open(overlay) as image:
        pixels = np.asarray(image.convert("L"), np.float64)
        scale = image.width / width
    kept = pixels[:int(0.7 * height * scale), :int(0.7 * width * scale)]
    assert kept[10:-10, 10:-10].min() == 255  # Inside the outline, the photo itself.
    assert pixels[int(0.8 * height * scale):, :].max() < 200  # Dimmed from 0.75 on.
    assert pixels[:, int(0.8 * width * scale):].max() < 200


def test_cli_overlay_takes_the_cells_of_its_labels(exported_tiny_run, photos, tmp_path,
                                                   monkeypatch):
    from keras_adahan import predict as predict_module
    from keras_adahan.predict import labels_fingerprint

    export_dir = exported_tiny_run["export_dir"]
    labels = run_files.read_json(os.path.join(export_dir, "labels.json"))
    uneven = [0.0, 0.3] + [0.3 + 0.7 * j / 15 for j in range(1, 16)]
    drawn = []
    monkeypatch.setattr(predict_module, "draw_overlay",
                        lambda image, mask, presence, edges, path: drawn.append(edges))
    for given, expected in ((uneven, uneven), (None, np.arange(17) / 16)):
        changed = {key: value for key, value in labels.items() if key != "cell_edges"}
        if given is not None:
            changed["cell_edges"] = given
        changed["fingerprint"] = labels_fingerprint(changed)  # As an export would write.
        path = tmp_path / "labels.json"
        path.write_text(json.dumps(changed))
        main(["--model", os.path.join(export_dir, "vqa_float32.tflite"), "--image",
              str(photos["RGB"]), "--question", QUESTION, "--labels", str(path),
              "--overlay", str(tmp_path / "overlay.png")])
        # Labels without cell_edges (export format 3 and older): the even split.
        np.testing.assert_allclose(drawn.pop(), expected)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_any_image_mode_is_converted_as_in_training(exported_tiny_run, keras_run, photos, mode):
    model = os.path.join(exported_tiny_run["export_dir"], "vqa_float32.tflite")
    results, vqa = predict(model, photos[mode], [QUESTION, ROOF_QUESTION], top=4)
    for result, question in zip(results, (QUESTION, ROOF_QUESTION)):
        answers = result["answers"]
        # Every label once, most probable first.
        assert sorted(label for label, _ in answers) == sorted(keras_run.answers)
        assert [p for _, p in answers] == sorted((p for _, p in answers), reverse=True)
        # Label by label, what the Keras model says about the photo, converted here.
        probabilities, mask = _keras_answer(keras_run, photos[mode], question)
        assert answers[0][0] == max(probabilities, key=probabilities.get), (mode, question)
        for label, probability in answers:
            assert probability == pytest.approx(probabilities[label], abs=1e-4), (mode, label)
        np.testing.assert_array_equal(result["mask"], mask)


@pytest.mark.parametrize("question, message", [
    ("", "has no words"),
    ("?!", "has no words"),
    ("zebra xylophone", "none of the words"),
])
def test_bad_question(exported_tiny_run, photos, question, message, tmp_path):
    model = os.path.join(exported_tiny_run["export_dir"], "vqa_int8.tflite")
    overlay = tmp_path / "overlay.png"
    with pytest.raises(SystemExit, match=f".*{message}"):
        main(["--model", model, "--image", photos["RGB"], "--question", question,
              "--overlay", str(overlay)])
    assert os.listdir(tmp_path) == []


def test_bad_files(exported_tiny_run, photos, tmp_path):
    export_dir = exported_tiny_run["export_dir"]
    model = os.path.join(export_dir, "vqa_int8.tflite")
    with pytest.raises(SystemExit, match=".*is not a readable image file"):
        main(["--model", model, "--image", photos["bad"], "--question", QUESTION])
    with pytest.raises(SystemExit, match=".*does not exist"):
        main(["--model", model, "--image", str(tmp_path / "missing.png"), "--question", QUESTION])
    with pytest.raises(SystemExit, match=".*does not exist"):
        main(["--model", str(tmp_path / "missing.tflite"), "--image", photos["RGB"],
              "--question", QUESTION])
    # A model without labels.json beside it, and a file that is not a model.
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(model, lonely / "vqa.tflite")
    with pytest.raises(SystemExit, match="no labels.json beside the model"):
        main(["--model", str(lonely / "vqa.tflite"), "--image", photos["RGB"],
              "--question", QUESTION])
    shutil.copy(os.path.join(export_dir, "labels.json"), lonely / "labels.json")
    (lonely / "vqa.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(SystemExit, match=".*not a readable .tflite model"):
        main(["--model", str(lonely / "vqa.tflite"), "--image", photos["RGB"],
              "--question", QUESTION])
    with pytest.raises(SystemExit, match="argument --top: expected a positive integer"):
        main(["--model", model, "--image", photos["RGB"], "--question", QUESTION, "--top", "0"])
    # An empty path read as "not given": no overlay written, the default labels used.
    for flag in ("--overlay", "--labels"):
        with pytest.raises(SystemExit, match=f"argument {flag}: expected a file path, "
                                             "received an empty string"):
            main(["--model", model, "--image", photos["RGB"], "--question", QUESTION,
                  flag, ""])
    # labels.json of an older format (no fingerprint) whose words hold "<pad>": the error
    # named no file.
    labels = json.loads(open(os.path.join(export_dir, "labels.json")).read())
    labels = {k: v for k, v in labels.items() if k not in ("fingerprint", "model_sha256")}
    labels.update(format="keras_adahan.export/1", words=["<pad>"] + labels["words"][1:])
    (lonely / "labels.json").write_text(json.dumps(labels))
    shutil.copy(model, lonely / "vqa.tflite")
    with pytest.raises(SystemExit, match=r".*labels.json' does not fit the model: `words` "
                                         "must be unique and must not hold <pad> or <oov>"):
        main(["--model", str(lonely / "vqa.tflite"), "--image", photos["RGB"],
              "--question", QUESTION])


def test_overlay_must_be_named_as_the_png_it_is(tmp_path):
    from keras_adahan.predict import check_overlay

    with pytest.raises(ValueError, match=r"--overlay '.*attention.jpg' must end in .png"):
        check_overlay(str(tmp_path / "attention.jpg"), inputs=[])
    check_overlay(str(tmp_path / "attention.PNG"), inputs=[])  # A new .png: fine.
    assert os.listdir(tmp_path) == []
    # A user's huge PNG (Pillow refuses to open it: a traceback before); its header only.
    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000,
                                                                        8, 0, 0, 0, 0))
                     + chunk(b"IEND", b""))
    with pytest.raises(ValueError, match="exists and is not an overlay this tool wrote"):
        check_overlay(str(huge), inputs=[])


def test_one_question_as_a_string(exported_tiny_run, photos):
    model = os.path.join(exported_tiny_run["export_dir"], "vqa_float32.tflite")
    results, _ = predict(model, photos["RGB"], QUESTION)  # Asked one character at a time.
    assert [result["question"] for result in results] == [QUESTION]


def test_warns_when_the_export_measured_the_file_below_keras(exported_tiny_run, photos,
                                                             tmp_path):
    export_dir = exported_tiny_run["export_dir"]
    copy = tmp_path / "export"
    copy.mkdir()
    for name in ("vqa_int8.tflite", "vqa_float32.tflite", "labels.json"):
        shutil.copy(os.path.join(export_dir, name), copy / name)
    report = run_files.read_json(os.path.join(export_dir, "export_report.json"))
    int8 = report["parity"]["artifacts"]["vqa_int8.tflite"]
    int8.update(accuracy_change_points=-0.3, answer_agreement=0.99)  # Within a point ...
    run_files.write_json(copy / "export_report.json", report)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ParityWarning)
        main(["--model", str(copy / "vqa_int8.tflite"), "--image", photos["RGB"],
              "--question", QUESTION])
    # ... one that fell 9.67 points below Keras at export is answered with a warning.
    int8.update(accuracy_change_points=-9.67, answer_agreement=0.5117)
    run_files.write_json(copy / "export_report.json", report)
    with pytest.warns(ParityWarning, match=r"vqa_int8\.tflite answers 9\.67 points below "
                      r"Keras on \d+ test questions \(agrees on 51\.17% of the answers\): "
                      r"ship vqa_\w+\.tflite instead \(measured at export: "
                      r".*export_report\.json\)"):
        main(["--model", str(copy / "vqa_int8.tflite"), "--image", photos["RGB"],
              "--question", QUESTION])
    # Renamed, it is the same file (found by its hash) ...
    shutil.copy(copy / "vqa_int8.tflite", tmp_path / "app_model.tflite")
    with pytest.warns(ParityWarning, match="vqa_int8.tflite answers 9.67 points"):
        main(["--model", str(tmp_path / "app_model.tflite"), "--labels",
              str(copy / "labels.json"), "--image", photos["RGB"], "--question", QUESTION])
    # ... and the report of another export does not speak for it.
    report["artifacts"]["vqa_int8.tflite"]["sha256"] = "0" * 64
    run_files.write_json(copy / "export_report.json", report)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ParityWarning)
        main(["--model", str(copy / "vqa_int8.tflite"), "--image", photos["RGB"],
              "--question", QUESTION])
    for bad in ("{not json", "", "[" * 100_000):  # Unreadable: answered, no warning.
        (copy / "export_report.json").write_text(bad)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ParityWarning)
            assert main(["--model", str(copy / "vqa_int8.tflite"), "--image", photos["RGB"],
                         "--question", QUESTION])
    # A report that would warn, padded past 10 MB: too large to be one of ours, not read.
    report["artifacts"]["vqa_int8.tflite"]["sha256"] = run_files.sha256(copy / "vqa_int8.tflite")
    (copy / "export_report.json").write_text(json.dumps(report) + " " * 11 * 2**20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ParityWarning)
        assert main(["--model", str(copy / "vqa_int8.tflite"), "--image", photos["RGB"],
                     "--question", QUESTION])
