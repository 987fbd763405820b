"""Beyond the barn: CLEVR through TFDS's own builder, and a user's folder, each trained,
evaluated, exported and asked, on tiny fixtures (no network)."""

import contextlib
import io
import json
import os
import shutil
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from keras_adahan import cli
from keras_adahan import data
from keras_adahan import run_files
from keras_adahan import train
from keras_adahan.datasets import registry
from keras_adahan.datasets.vqa_folder import folder_format
from keras_adahan.export import exporter
from keras_adahan.predict import predict

CLEVR_DUMMY = os.path.join(os.path.dirname(registry.__file__), "clevr", "dummy_data")
FAST = ["--epochs", "1", "--set", "image_size=32"]


def run_export_predict(run_dir, export_dir, image, question):
    exporter.export(run_dir, export_dir, quantizations=("float32", "int8"),
                    calibration_steps=4, log=lambda message: None)
    results, _ = predict(os.path.join(export_dir, "vqa_int8.tflite"), image, [question])
    return results[0]


# --- CLEVR ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clevr_run(tmp_path_factory):
    """CLEVR prepared from an archive already on disk (DATA_DIR/downloads/manual/), the way
    a user who downloaded CLEVR_v1.0.zip runs it: TFDS's builder extracts and reads it."""
    root = tmp_path_factory.mktemp("clevr")
    manual = root / "tfds" / "downloads" / "manual"
    manual.mkdir(parents=True)
    with zipfile.ZipFile(manual / "CLEVR_v1.0.zip", "w") as archive:
        for parent, _, names in os.walk(os.path.join(CLEVR_DUMMY, "CLEVR_v1.0")):
            for name in names:
                path = os.path.join(parent, name)
                archive.write(path, os.path.relpath(path, CLEVR_DUMMY))
    run_dir = root / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        metrics = train.main(["--dataset", "clevr", "--preset", "clevr", *FAST,
                              "--data_dir", str(root / "tfds"), "--output_dir", str(run_dir)])
    (root / "printed.txt").write_text(printed.getvalue())  # What the trainer printed.
    return root, run_dir, metrics


def test_clevr_trains_and_reports_on_validation(clevr_run):
    root, run_dir, metrics = clevr_run
    dataset = data.prepare_dataset("clevr", str(root / "tfds"), build=False)
    assert os.path.isdir(root / "tfds" / "clevr" / "3.1.0")  # TFDS's own folder.
    # The training split's answers, sorted: what the fixture's questions answer.
    questions = json.load(open(os.path.join(
        CLEVR_DUMMY, "CLEVR_v1.0", "questions", "CLEVR_train_questions.json")))["questions"]
    assert dataset.answer_names == sorted({q["answer"] for q in questions})
    assert run_files.load_run(str(run_dir)).answers == dataset.answer_names
    # Reported on validation (the test split has no answers), per answer kind; a validation
    # answer that train never gives is left out of the figures.
    val = json.load(open(os.path.join(
        CLEVR_DUMMY, "CLEVR_v1.0", "questions", "CLEVR_val_questions.json")))["questions"]
    known = [q for q in val if q["answer"] in dataset.answer_names]
    assert metrics["split"] == "validation" and metrics["num_questions"] == len(known)
    assert set(metrics["accuracy_per_type"]) <= {"yes/no", "count", "color", "shape",
                                                 "material", "size"}
    assert "grounding_top_cell" not in metrics  # CLEVR's questions have no target boxes.
    # The kept epoch was chosen on that split too: said, not left for the reader to know.
    assert "the validation split also chose the kept epoch, 1: these figures lean " \
           "optimistic" in (root / "printed.txt").read_text()
    with pytest.raises(ValueError, match="test split has an answer .* --split validation"):
        data.question_arrays(dataset, "test", run_files.load_run(str(run_dir)).vocabulary, 32, 48)


def test_a_half_extracted_clevr_folder_is_refused(tmp_path, monkeypatch):
    # TFDS reads the questions of the images it finds: an extraction stopped early built a
    # smaller CLEVR without a word.
    from keras_adahan.datasets import clevr

    manual = tmp_path / "tfds" / "downloads" / "manual"
    extracted = manual / "CLEVR_v1.0"
    shutil.copytree(os.path.join(CLEVR_DUMMY, "CLEVR_v1.0"), extracted)
    counts = {split: len(os.listdir(extracted / "images" / split)) for split in clevr.IMAGES}
    monkeypatch.setattr(clevr, "IMAGES", counts)  # The fixture's counts stand for CLEVR's.
    last = sorted((extracted / "images" / "train").iterdir())[-1]
    moved = last.rename(tmp_path / last.name)
    with pytest.raises(ValueError, match=rf"images/train' holds {counts['train'] - 1} images, "
                                         rf"CLEVR v1.0's {counts['train']}: an interrupted "
                                         "extraction"):
        data.prepare_dataset("clevr", str(tmp_path / "tfds"))
    moved.rename(last)  # Whole again (a file manager's .DS_Store beside): built from it.
    (extracted / "images" / "train" / ".DS_Store").write_bytes(b"\0")
    dataset = data.prepare_dataset("clevr", str(tmp_path / "tfds"))
    assert dataset.num_examples("train") == counts["train"]


def test_clevr_questions_per_image_vary_and_are_padded(clevr_run):
    root, run_dir, _ = clevr_run
    dataset = data.prepare_dataset("clevr", str(root / "tfds"), build=False)
    assert not dataset.fixed_questions and dataset.questions_per_image == 4
    run = run_files.load_run(str(run_dir))
    inputs, answers, weights = next(iter(data.training_batches(
        dataset, "train", run.vocabulary, 32, 48, batch_size=6)))
    counts = [len(qs) for qs in _clevr_questions("train").values()]
    # One row per image, padded to 4 questions; padding weighs nothing.
    assert inputs["questions"].shape == (6, 4, 48)
    assert sorted(np.asarray(weights).sum(1).astype(int).tolist()) == sorted(counts)


def _clevr_questions(split):
    questions = json.load(open(os.path.join(
        CLEVR_DUMMY, "CLEVR_v1.0", "questions", f"CLEVR_{split}_questions.json")))["questions"]
    by_image = {}
    for q in questions:
        by_image.setdefault(q["image_filename"], []).append(q)
    return by_image


def test_clevr_run_exports_and_answers(clevr_run):
    root, run_dir, _ = clevr_run
    image = os.path.join(CLEVR_DUMMY, "CLEVR_v1.0", "images", "val", "CLEVR_val_000000.png")
    result = run_export_predict(str(run_dir), str(root / "export"), image,
                                "How many spheres are there?")
    answers = run_files.load_run(str(run_dir)).answers
    assert [a for a, _ in result["answers"]] == [a for a, _ in result["answers"]
                                                 if a in answers]
    report = run_files.read_json(root / "export" / "export_report.json")
    assert report["parity"]["split"] == "validation"
    assert report["parity"]["artifacts"]["vqa_float32.tflite"]["answer_agreement"] == 1.0


# --- A user's folder -------------------------------------------------------------------------


def make_folder(path):
    """Red or blue cards on grey, as PNG, JPEG with an EXIF rotation, and grayscale PNG;
    some images asked two questions, some one; types and boxes on some lines only."""
    (path / "img").mkdir(parents=True)
    lines = {"train": [], "test": []}
    for i in range(30):
        colour = ("red", "blue")[i % 2]
        card = Image.new("RGB", (60, 40), (128, 128, 128))
        card.paste({"red": (210, 30, 30), "blue": (30, 30, 210)}[colour], (10, 0, 30, 20))
        if i % 3 == 0:
            name = f"img/{i:02d}.png"
            card.save(path / name)
        elif i % 3 == 1:
            name = f"img/{i:02d}.jpg"
            exif = Image.Exif()
            exif[0x0112] = 6  # Shown rotated 90 degrees clockwise.
            card.transpose(Image.Transpose.ROTATE_90).save(path / name, exif=exif, quality=95)
        else:
            name = f"img/{i:02d}_gray.png"
            card.convert("L").save(path / name)
        split = "test" if i >= 24 else "train"
        lines[split].append({"image": name, "question": "What colour is the card?",
                             "answer": colour if i % 3 != 2 else "gray", "type": "colour"})
        if i % 2 == 0:
            lines[split].append({"image": name, "question": "Where is the card?",
                                 "answer": "top left", "box": [0.0, 1 / 6, 0.5, 0.5]})
    for split, records in lines.items():
        with open(path / f"{split}.jsonl", "w") as f:
            f.writelines(json.dumps(record) + "\n" for record in records)
    return path


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    folder = make_folder(root / "cards")
    run_dir = root / "run"
    metrics = train.main(["--dataset", f"folder:{folder}", *FAST, "--data_dir",
                          str(root / "tfds"), "--output_dir", str(run_dir)])
    return root, folder, run_dir, metrics


def test_folder_is_prepared_once_grouped_by_image(folder_run):
    root, folder, run_dir, metrics = folder_run
    dataset = data.prepare_dataset(f"folder:{folder}", str(root / "tfds"), build=False)
    splits = folder_format.read_folder(str(folder))
    # 24 train images, 10% held out by path (the same every time), 6 test images.
    held = [line.image for line in splits["validation"]]
    assert held and not set(held) & {line.image for line in splits["train"]}
    assert dataset.num_examples("train") + dataset.num_examples("validation") == 24
    assert dataset.num_examples("test") == 6
    assert dataset.num_questions("test") == 9 and metrics["num_questions"] == 9
    assert dataset.answer_names == ["blue", "gray", "red", "top left"]
    assert dataset.type_names == ["all", "colour"]
    assert metrics["split"] == "test" and set(metrics["accuracy_per_type"]) == {"all", "colour"}
    # Grounding is measured on the lines with a box only.
    assert "grounding_top_cell" in metrics
    # Images are stored upright and in colour, whatever their file.
    stored = {e["image_path"].decode(): e["image"] for e in tfds.as_numpy(
        dataset.builder.as_dataset("test", shuffle_files=False))}
    upright = stored["img/25.jpg"]  # A rotated JPEG: the card top left once turned.
    assert upright.shape == (40, 60, 3)
    saturation = upright.max(-1).astype(int) - upright.min(-1)  # Card: high; grey: ~0.
    assert saturation[2:18, 12:28].mean() > 120 and saturation[24:, 34:].mean() < 20
    assert stored["img/26_gray.png"].shape == (40, 60, 3)


def test_folder_run_evaluates_exports_and_answers(folder_run):
    root, folder, run_dir, metrics = folder_run
    from keras_adahan import evaluate

    evaluate.main([str(run_dir)])
    assert run_files.read_json(run_dir / "metrics.json") == metrics
    result = run_export_predict(str(run_dir), str(root / "export"), str(folder / "img/24.png"),
                                "What colour is the card?")
    assert {a for a, _ in result["answers"]} <= {"blue", "gray", "red", "top left"}


def test_resume_refuses_a_folder_whose_answers_changed(tmp_path):
    # "gray" renamed "white": the sorted answers become blue, red, top left, white, and
    # --resume relabelled the trained ids (the model's "gray" was written as "red").
    folder = make_folder(tmp_path / "cards")
    flags = ["--dataset", f"folder:{folder}", *FAST, "--data_dir", str(tmp_path / "tfds"),
             "--output_dir", str(tmp_path / "run")]
    train.main(flags)
    answers = (tmp_path / "run" / "answers.json").read_bytes()
    for split in ("train", "test"):
        path = folder / f"{split}.jsonl"
        path.write_text(path.read_text().replace('"gray"', '"white"'))
    with pytest.raises(cli.UserError, match=r"--resume: .* was trained on other answers than "
                                            r".* gives now \(\['gray'\] no longer, "
                                            r"\['white'\] new\)"):
        train.main(flags + ["--resume"])
    assert (tmp_path / "run" / "answers.json").read_bytes() == answers
    # The same answers, other lines: resumed on the new build without a word (on fewer
    # images, a cosine schedule sized to them ran at a rate of 0).
    for split in ("train", "test"):
        path = folder / f"{split}.jsonl"
        path.write_text(path.read_text().replace('"white"', '"gray"'))
    lines = (folder / "train.jsonl").read_text().splitlines(keepends=True)
    (folder / "train.jsonl").write_text("".join(lines[:-1]))
    with pytest.raises(cli.UserError, match=r"--resume: .* was trained on another training "
                                            r"split of .* \(\d+ images, (\d+) questions; "
                                            r"now \d+, (?!\1)\d+\)"):
        train.main(flags + ["--resume"])
    assert (tmp_path / "run" / "answers.json").read_bytes() == answers
    # A copy that kept no file times: a new build of the same examples, resumed.
    (folder / "train.jsonl").write_text("".join(lines))
    for image in (folder / "img").iterdir():
        os.utime(image, ns=(10**18, 10**18))
    train.main(flags + ["--resume"])
    # An answer changed (a label fixed), as many images and questions: resumed on it
    # without a word.
    assert '"answer": "red"' in lines[0]
    (folder / "train.jsonl").write_text("".join(lines).replace('"answer": "red"',
                                                               '"answer": "blue"', 1))
    with pytest.raises(cli.UserError, match=r"--resume: .* was trained on another training "
                                            r"split of .* \(as many images and questions, "
                                            r"but other lines or images\)"):
        train.main(flags + ["--resume"])
    # Nor is a copy of the folder elsewhere taken for other data (a run names its folder).
    (folder / "train.jsonl").write_text("".join(lines))
    digest = folder_format.training_digest(str(folder))
    assert folder_format.training_digest(str(shutil.copytree(folder, tmp_path / "copy"))) == digest


def test_a_changed_folder_is_prepared_again(folder_run, tmp_path):
    root, folder, _, _ = folder_run
    copy = shutil.copytree(folder, tmp_path / "cards")
    before = registry.get_dataset(f"folder:{copy}").make_builder(str(tmp_path / "tfds"))
    with open(copy / "train.jsonl", "a") as f:
        f.write(json.dumps({"image": "img/00.png", "question": "Is it a card?",
                            "answer": "yes"}) + "\n")
    after = registry.get_dataset(f"folder:{copy}").make_builder(str(tmp_path / "tfds"))
    assert before.builder_config.name != after.builder_config.name


def test_prepare_builds_a_folder_that_an_unbuilt_message_names(tmp_path, capsys):
    from keras_adahan import prepare

    folder = make_folder(tmp_path / "cards")
    data_dir = str(tmp_path / "tfds")
    command = f"python -m keras_adahan.prepare --dataset folder:{folder} --data_dir {data_dir}"
    with pytest.raises(FileNotFoundError) as unbuilt:
        data.prepare_dataset(f"folder:{folder}", data_dir, build=False)
    # The command builds it where it was looked for (it named no --data_dir before, and
    # trained a model to build a folder).
    assert str(unbuilt.value).endswith(f"build it with `{command}`")
    prepare.main(command.split()[3:])
    assert f"the folder {folder} is built in {data_dir}" in capsys.readouterr().out
    built = data.prepare_dataset(f"folder:{folder}", data_dir, build=False)
    assert built.num_examples("test") == 6


@pytest.mark.parametrize("edit, message", [
    (lambda p: (p / "img/04.jpg").unlink(),
     r"train.jsonl:\d+: image 'img/04.jpg' does not exist in"),
    (lambda p: _append(p / "train.jsonl", "{not json"), r"train.jsonl:\d+: not a JSON object"),
    (lambda p: _append(p / "test.jsonl", json.dumps(
        {"image": "img/24.png", "question": "What is it?", "answer": "a dragon"})),
     r"test.jsonl:\d+: the answer 'a dragon' never occurs in train.jsonl"),
    (lambda p: (p / "test.jsonl").write_text(""), "the test split of .* has no questions"),
    (lambda p: (p / "test.jsonl").unlink(), "test.jsonl' is missing"),
    (lambda p: _append(p / "train.jsonl", json.dumps(
        {"image": "img/00.png", "question": "Where?", "answer": "top left",
         "box": [0.5, 0.1, 0.2, 0.9]})), r"train.jsonl:\d+: \"box\" must be \[ymin, xmin"),
    (lambda p: _append(p / "train.jsonl", json.dumps(
        {"image": "../outside.png", "question": "Q?", "answer": "red"})),
     "must be a path inside the folder"),
    (lambda p: _append(p / "train.jsonl", json.dumps(
        {"image": "img/00.png", "question": "", "answer": "red"})),
     "\"question\" must be a non-empty string"),
    (lambda p: _append(p / "test.jsonl", json.dumps(
        {"image": "img/24.png", "question": "Caf\u00e9?", "answer": "red"},
        ensure_ascii=False).encode("latin-1").decode("utf-8", "surrogateescape")),
     r"test.jsonl:10: not UTF-8 text \(byte 0xe9\)"),  # After its 9 lines.
    (lambda p: (p / "validation.jsonl").mkdir(), "validation.jsonl' is not a file"),
    # A plain ValueError and a RecursionError traceback, naming no file.
    (lambda p: _append(p / "train.jsonl", '{"image": "img/00.png", "box": [' + "1" * 5000 +
                       "]}"), r"train.jsonl:\d+: not a JSON line this format reads"),
    (lambda p: _append(p / "train.jsonl", "[" * 100_000),
     r"train.jsonl:\d+: not a JSON line this format reads"),
    (lambda p: (p / "img/06.png").write_bytes(b"not a png"),
     r"train.jsonl:\d+: .*img/06.png' is not a readable image file"),
])
def test_a_bad_folder_is_refused_naming_file_and_line(tmp_path, capfd, edit, message):
    folder = make_folder(tmp_path / "cards")
    edit(folder)
    data_dir = tmp_path / "tfds"
    capfd.readouterr()
    with pytest.raises(ValueError, match=message):
        data.prepare_dataset(f"folder:{folder}", str(data_dir))
    # Refused before TFDS starts: none of its progress bars above the one line.
    assert "Generating" not in capfd.readouterr().err
    # Nothing half-written: no prepared dataset, at most an incomplete build TFDS never
    # reads as built (and the next build removes).
    built = [p for p in data_dir.glob("vqa_folder/*/1.0.0")] if data_dir.exists() else []
    assert built == []


def test_answers_held_out_alone_or_alike_but_for_case_are_named(tmp_path):
    folder = make_folder(tmp_path / "cards")
    splits = folder_format.read_folder(str(folder))
    held_out, kept = splits["validation"][0].image, splits["train"][0].image
    _append(folder / "train.jsonl", json.dumps({"image": held_out, "question": "Is it a card?",
                                                "answer": "maybe"}))
    # It said "never occurs in train.jsonl", of a line of train.jsonl.
    with pytest.raises(folder_format.FolderError,
                       match=r"train.jsonl:37: the answer 'maybe' is given only for images "
                             r"held out for validation \(no validation.jsonl: 10%"):
        folder_format.read_folder(str(folder))
    (folder / "train.jsonl").write_text(
        "".join((folder / "train.jsonl").read_text().splitlines(True)[:-1]) +
        json.dumps({"image": kept, "question": "What colour is the card?", "answer": "Red"}) +
        "\n")
    with pytest.warns(UserWarning, match=r"train.jsonl: answers that differ only in case, "
                                         r"spaces or Unicode form are different answers to the "
                                         r"model: 'Red' and 'red'$"):
        assert "Red" in {line.answer for line in folder_format.read_folder(str(folder))["train"]}
    # Two spaces, or an accent typed as a combining mark: named too (they were not).
    base = "".join((folder / "train.jsonl").read_text().splitlines(True)[:-1])
    for twins in (["top  left"], ["caf\u00e9", "cafe\u0301"]):
        (folder / "train.jsonl").write_text(base + "".join(
            json.dumps({"image": kept, "question": "Where is the card?", "answer": a}) + "\n"
            for a in twins))
        with pytest.warns(UserWarning, match="differ only in case, spaces or Unicode form"):
            folder_format.read_folder(str(folder))


def test_a_bom_and_an_image_named_with_two_leading_dots_are_read(tmp_path):
    # Refused: "Unexpected UTF-8 BOM" (Notepad, Excel), and "..x.png" as outside the folder.
    folder = make_folder(tmp_path / "cards")
    shutil.copy(folder / "img/00.png", folder / "..x.png")
    text = (folder / "train.jsonl").read_text() + json.dumps(
        {"image": "..x.png", "question": "What colour is the card?", "answer": "red"}) + "\n"
    (folder / "train.jsonl").write_bytes(b"\xef\xbb\xbf" + text.encode())
    splits = folder_format.read_folder(str(folder))
    assert "..x.png" in {line.image for lines in splits.values() for line in lines}
    # A byte that is not UTF-8 after the BOM: named on its own line, as without one.
    first = (folder / "test.jsonl").read_bytes().splitlines(True)[0]
    (folder / "test.jsonl").write_bytes(b"\xef\xbb\xbf" + first + b"\xe9\n")
    with pytest.raises(folder_format.FolderError, match=r"test.jsonl:2: not UTF-8 text "
                                                        r"\(byte 0xe9\)"):
        folder_format.read_folder(str(folder))


def test_a_warmup_type_no_training_question_has_is_refused(tmp_path):
    folder = make_folder(tmp_path / "cards")
    _append(folder / "test.jsonl", json.dumps({"image": "img/24.png", "type": "other",
                                               "question": "Is it red?", "answer": "red"}))
    # It trained its warm-up epoch on nothing (loss 0.0) and exited 0.
    with pytest.raises(SystemExit, match=r"--warmup_types: no training question of .* has the "
                                         r"type 'other'; the warm-up would train on nothing"):
        train.main(["--dataset", f"folder:{folder}", "--epochs", "2", "--warmup_types",
                    "other", "--warmup_epochs", "1", "--data_dir", str(tmp_path / "tfds"),
                    "--output_dir", str(tmp_path / "run")])


def _append(path, line):
    with open(path, "a", errors="surrogateescape") as f:  # Bytes that are not UTF-8 too.
        f.write(line + "\n")


def test_unknown_dataset_names_the_folder_form():
    with pytest.raises(ValueError, match="known: classic, .*clevr.*or folder:PATH"):
        registry.get_dataset("imagenet")


def test_int8_calibration_reads_the_questions_asked_only(folder_run):
    # Images asked one question were padded with an empty one (all ids 0), which the int8
    # calibration took for a question, and the export report counted.
    from keras_adahan.export import exporter

    root, folder, run_dir, _ = folder_run
    run = run_files.load_run(str(run_dir))
    dataset = data.prepare_dataset(f"folder:{folder}", str(root / "tfds"), build=False)
    calibration = exporter.calibration_samples(run.model, dataset, run.vocabulary, 12)
    fed = [inputs["question"] for signature, inputs in calibration.dataset()
           if signature == "vqa"]
    asked = [len(questions) for questions in calibration.questions]
    assert set(asked) == {1, 2}  # Both kinds of image among the 12.
    assert len(fed) == calibration.num_questions == sum(asked)
    assert all(question.any() for question in fed)
