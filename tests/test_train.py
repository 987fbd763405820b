"""The trainer and evaluation end to end, on the tiny barn_vqa config."""

import json
import math
import os
import re
import subprocess
import sys
import types

import keras
import numpy as np
import pytest
from PIL import Image
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_adahan import data, evaluate, folders, run_files, train
from keras_adahan.datasets import registry
from keras_adahan.model import build_model
from keras_adahan.presets import get_preset
from keras_adahan.text import Vocabulary


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    data_dir, run_dir = str(root / "tfds"), str(root / "run")
    metrics = train.main(["--dataset", "tiny", "--epochs", "2", "--data_dir", data_dir,
                          "--output_dir", run_dir])
    return run_dir, data_dir, metrics


def test_run_folder_holds_a_usable_model(tiny_run):
    run_dir, data_dir, metrics = tiny_run
    for name in ("model.keras", "vocabulary.json", "answers.json", "config.json",
                 "history.csv", "training.json", "metrics.json", "plots/history.png",
                 "plots/attention.png"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    for plot in ("history", "attention"):  # Drawn, not blank.
        with Image.open(os.path.join(run_dir, "plots", f"{plot}.png")) as image:
            pixels = np.asarray(image.convert("L"))
        assert len(np.unique(pixels)) > 10, plot
    run = run_files.load_run(run_dir)
    assert run.answers == ["chicken", "sheep", "cow", "pig"]
    assert run.config["train"]["dataset"] == "tiny"
    # --dtype auto is recorded as what it chose on this machine.
    assert run.config["train"]["dtype"] in ("float32", "mixed_bfloat16")
    history = train.read_history(os.path.join(run_dir, "history.csv"))
    assert len(history["loss"]) == 2 and "val_accuracy" in history
    # Restoring the best weights is the default: the model saved (and evaluated below) is
    # the epoch with the lowest validation loss.
    training = json.load(open(os.path.join(run_dir, "training.json")))
    assert training["kept_epoch"] == 1 + int(np.argmin(history["val_loss"]))
    # The model carries its config: the run's config.json and the loaded model agree.
    assert run.model.config.to_dict() == run.config["model"]
    assert run.model.grid_size == 16 and run.model.cell_boxes().shape == (256, 4)
    # The saved model answers like the evaluation said it does.
    dataset = data.prepare_dataset("tiny", data_dir, build=False)
    arrays = data.question_arrays(dataset, "test", run.vocabulary, 128, 16)
    outputs = evaluate.predict_split(run.model, arrays)
    accuracy = (outputs["answer"].argmax(-1) == arrays.answers).mean()
    assert accuracy == pytest.approx(metrics["accuracy"])
    assert metrics["num_questions"] == 12  # 4 test images x 3 questions
    assert set(metrics["accuracy_per_type"]) == {"roof", "front", "hay"}
    assert metrics["kept_share_mean"] == pytest.approx(26 / 256)  # HAN keeps 10% of 256 cells
    # Grounding recomputed here from the model's outputs and the boxes read straight from
    # the TFDS files: the share of questions whose highest-presence kept cell has its centre
    # (16x16 grid over [0, 1], row-major) inside the question's box. Count questions and
    # "nothing" answers are left out of grounding; `tiny` has neither (all 12 are scored).
    features = dataset.builder.info.features["questions"]
    type_names, answer_names = features["type"].names, features["answer"].names
    rows = []
    for example in tfds.as_numpy(dataset.builder.as_dataset("test", shuffle_files=False)):
        questions = example["questions"]
        rows.extend(zip(questions["question"], questions["type"], questions["answer"],
                        questions["box"]))
    assert [text.decode() for text, _, _, _ in rows] == arrays.texts
    grid, on_target = 16, []
    for q, (_, qtype, answer, box) in enumerate(rows):
        if type_names[qtype] == "count" or answer_names[answer] == "nothing":
            continue
        kept = [n for n in range(grid * grid) if outputs["mask"][q, n] > 0.5]
        top = max(kept, key=lambda n: outputs["presence"][q, n])  # First of equals.
        y, x = (top // grid + 0.5) / grid, (top % grid + 0.5) / grid
        ymin, xmin, ymax, xmax = (float(v) for v in box)
        on_target.append(ymin <= y <= ymax and xmin <= x <= xmax)
    assert len(on_target) == 12
    assert metrics["grounding_top_cell"] == pytest.approx(sum(on_target) / len(on_target))


def test_tokenizer_and_labels_are_the_training_ones(tiny_run):
    run_dir, data_dir, _ = tiny_run
    words = json.load(open(os.path.join(run_dir, "vocabulary.json")))["words"]
    assert {"what", "animal", "roof", "barn", "hay"} <= set(words)
    # The words of the training split's questions, read from the TFDS files, in order of
    # first appearance (lower case, split on anything but letters and digits).
    builder = tfds.builder_from_directory(os.path.join(data_dir, "barn_vqa", "tiny", "1.0.0"))
    expected = []
    for example in tfds.as_numpy(builder.as_dataset("train", shuffle_files=False)):
        for question in example["questions"]["question"]:
            for word in re.findall(r"[a-z0-9]+", question.decode().lower()):
                if word not in expected:
                    expected.append(word)
    assert words == expected
    # The answer labels, in the order of the dataset's ClassLabel (the logits' order).
    answers = json.load(open(os.path.join(run_dir, "answers.json")))["answers"]
    assert answers == builder.info.features["questions"]["answer"].names


def test_existing_run_folder_is_refused(tiny_run):
    run_dir, data_dir, _ = tiny_run
    before = sorted(os.listdir(run_dir))
    with pytest.raises(SystemExit, match="already exists. Pass --overwrite"):
        train.main(["--dataset", "tiny", "--data_dir", data_dir, "--output_dir", run_dir])
    assert sorted(os.listdir(run_dir)) == before


def test_evaluate_cli(tiny_run):
    run_dir, data_dir, metrics = tiny_run
    result = subprocess.run(
        [sys.executable, "-m", "keras_adahan.evaluate", run_dir, "--split", "validation",
         "--data_dir", data_dir], capture_output=True, text=True, check=True)
    assert "grounding top cell" in result.stdout
    saved = json.load(open(os.path.join(run_dir, "metrics_validation.json")))
    assert saved["split"] == "validation"
    # The last line printed is the JSON of the figures written.
    lines = result.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == saved
    # The summary's accuracy line shows that accuracy, which is the model's on the
    # validation split's 12 questions (4 images x 3).
    (accuracy_line,) = [line for line in lines if line.split()[:1] == ["accuracy"]]
    assert re.fullmatch(r"\s*accuracy\s+(\S+)\s+\(12 questions\)", accuracy_line).group(1) == (
        f"{saved['accuracy']:.2%}")
    run = run_files.load_run(run_dir)
    dataset = data.prepare_dataset("tiny", data_dir, build=False)
    arrays = data.question_arrays(dataset, "validation", run.vocabulary, 128, 16)
    outputs = evaluate.predict_split(run.model, arrays)
    assert saved["accuracy"] == pytest.approx((outputs["answer"].argmax(-1) == arrays.answers).mean())
    # Re-evaluating the test split rewrites metrics.json with the same figures; what
    # training recorded lives in training.json, which evaluation leaves alone.
    training = open(os.path.join(run_dir, "training.json")).read()
    evaluate.main([run_dir, "--data_dir", data_dir])
    again = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert again == metrics
    assert open(os.path.join(run_dir, "training.json")).read() == training


@pytest.mark.parametrize("argv, message", [
    (["--variant", "hard"], "argument --variant: invalid choice: 'hard'"),
    (["--epochs", "0"], "argument --epochs: expected a positive integer, received '0'"),
    (["--seed", "-1"], "argument --seed: expected a seed in [0, 2**32), received '-1'"),
    (["--k", "0"], "`k` must be a count in [1, num_cells] or a share of the cells in (0, 1]"),
    (["--variant", "adahan", "--threshold", "1.5"],
     "`threshold` must be in (0, 1], received 1.5"),
    # The preset's k against a grid the image size shrank: it blamed k alone.
    (["--k", "7", "--set", "image_size=8"],
     "`k` must be in [1, num_cells] = [1, 1], received 7: image_size 8 gives a 1x1 grid"),
    (["--threshold", "0.1"],
     "--threshold is AdaHAN's; it needs --variant adahan, received --variant han"),
    (["--variant", "soft", "--min_cells", "1"],
     "--min_cells is AdaHAN's; it needs --variant adahan, received --variant soft"),
    (["--set", "max_cells=7"], "--set max_cells is AdaHAN's; it needs --variant adahan"),
    (["--variant", "none", "--k", "3"],
     "--k is HAN's and AdaHAN's; --variant none keeps every cell: drop --k"),
    (["--variant", "adahan", "--k", "3", "--min_cells", "2"],
     "--k sets AdaHAN's floor where no --min_cells is set; --min_cells sets it"),
    (["--preset", "reference", "--variant", "adahan", "--k", "3"],  # Its floor is 1 cell.
     "--k sets AdaHAN's floor where no --min_cells is set; the reference preset sets it"),
    (["--set", "aggregation=relational", "--aggregation", "sum"],
     "--set aggregation=... is set by --aggregation; use that instead"),
    (["--dataset", "farm"], "argument --dataset: unknown dataset 'farm'; known: classic"),
    # Refused at the dataset step, after the run folder was made (left holding its marker).
    (["--dataset", "folder:/nonexistent/x"],
     "--dataset folder:/nonexistent/x: '/nonexistent/x' is no folder: expected a folder of"),
    (["--set", "bogus=1"], "Unknown ModelConfig field(s) ['bogus']; allowed: ['aggregate_norm'"),
    (["--set", "aggregate_norm=7"], "`aggregate_norm` must be a bool, received 7"),
    (["--set", "rnn"], "--set takes FIELD=VALUE, received 'rnn'"),
    (["--set", "rnn=lstm", "--set", "rnn=gru"], "--set rnn is given twice; give it once"),
    (["--set", "conv_strides=[2,2,2,1,2147483648]"],
     "`conv_strides` must be at most 2,048 (the largest image_size)"),
    (["--set", "pool_strides=[2,2,2,1,1]", "--set", "pool_sizes=[2,2,2,1,10000000000]"],
     "`pool_sizes` must be at most 2,048 (the largest image_size)"),
    (["--warmup_types", "shape"], "--warmup_types and --warmup_epochs go together"),
    (["--epochs", "2", "--warmup_types", "shape", "--warmup_epochs", "2"],
     "--warmup_epochs must be in [0, --epochs) = [0, 2), received 2"),
    # Both given: it said they "go together".
    (["--epochs", "2", "--warmup_types", "shape", "--warmup_epochs", "-1"],
     "--warmup_epochs must be in [0, --epochs) = [0, 2), received -1"),
    (["--init_from", "/nonexistent/run"], "--init_from '/nonexistent/run' is not a run folder"),
    (["--init_from", "RUN", "--overwrite"], "is the run --init_from starts from"),
    # Was refused after the dataset's build (CLEVR: an 18 GB download).
    (["--epochs", "2", "--warmup_types", "roof", "hay_bale", "--warmup_epochs", "1"],
     "--warmup_types: 'hay_bale' is not a question type of barn_vqa/tiny (roof, front, hay)"),
])
def test_bad_flags_give_clear_errors(tmp_path, argv, message):
    (tmp_path / "run").mkdir()  # Empty: a new run may be written there.
    argv = [str(tmp_path / "run") if flag == "RUN" else flag for flag in argv]
    with pytest.raises(SystemExit) as stop:
        train.main(["--dataset", "tiny", *argv] + ["--data_dir", str(tmp_path / "tfds"),
                                                   "--output_dir", str(tmp_path / "run")])
    assert stop.value.code == 2 and message in str(stop.value), str(stop.value)
    # Refused before anything was written: no dataset, nothing in the run folder.
    assert os.listdir(tmp_path / "run") == [] and not os.path.exists(tmp_path / "tfds")


def test_init_from_refuses_its_own_folder_by_default_or_through_a_link(tmp_path, monkeypatch):
    """With --overwrite the new run would replace the one it starts from."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "tiny-default-han-seed0"  # The default --output_dir.
    run.mkdir(parents=True)
    (tmp_path / "link").symlink_to(run)
    for argv in (["--init_from", str(run)], ["--init_from", "link", "--output_dir", str(run)]):
        with pytest.raises(SystemExit, match="is the run --init_from starts from"):
            train.main(["--dataset", "tiny", "--overwrite", *argv])


def test_init_from_starts_from_the_runs_weights(tiny_run, tmp_path):
    source_dir, data_dir, _ = tiny_run
    source = run_files.load_run(source_dir).model
    out = str(tmp_path / "finetuned")
    # A rate too small to move a weight: what the run ends with is what it started from.
    train.main(["--dataset", "tiny", "--epochs", "1", "--learning_rate", "1e-12", "--seed", "5",
                "--data_dir", data_dir, "--output_dir", out, "--init_from", source_dir])
    tuned = run_files.load_run(out)
    assert tuned.config["train"]["init_from"] == source_dir
    pairs = [(a.path, a.numpy(), b.numpy())
             for a, b in zip(source.trainable_weights, tuned.model.trainable_weights)]
    assert len(pairs) > 10
    for path, before, after in pairs:
        np.testing.assert_allclose(after, before, atol=1e-6, err_msg=path)


def test_vocabulary_of_a_resumed_or_initialized_run_keeps_its_word_ids(tiny_run, tmp_path):
    _, data_dir, _ = tiny_run
    dataset = data.prepare_dataset("tiny", data_dir, build=False)
    words = data.build_vocabulary(dataset).words
    # Another dataset may list the same words in another order (TFDS writes examples in
    # its own order): the ids must stay the ones the weights were trained with.
    reordered = Vocabulary(["extra"] + words[::-1])
    source = types.SimpleNamespace(vocabulary=reordered)
    args = train.parse_args(["--dataset", "tiny", "--init_from", str(tmp_path)])
    assert train.training_vocabulary(args, str(tmp_path / "new"), dataset, source) is reordered
    args = train.parse_args(["--dataset", "tiny", "--resume"])
    reordered.save(str(tmp_path / "vocabulary.json"))
    resumed = train.training_vocabulary(args, str(tmp_path), dataset, None)
    assert resumed.words == reordered.words
    for bad, content in (("empty", ""), ("truncated", '{"words": ['), ("folder", None)):
        saved = tmp_path / bad / "vocabulary.json"
        if content is None:
            saved.mkdir(parents=True)
        else:
            saved.parent.mkdir()
            saved.write_text(content)
        with pytest.raises(SystemExit, match="--resume: .* is not a vocabulary"):
            train.training_vocabulary(args, str(saved.parent), dataset, None)
    source.vocabulary = Vocabulary(words[1:])
    args = train.parse_args(["--dataset", "tiny", "--init_from", str(tmp_path)])
    with pytest.raises(SystemExit, match=f"barn_vqa/tiny's questions hold words that "
                                         f"--init_from .* vocabulary lacks: {words[0]}$"):
        train.training_vocabulary(args, str(tmp_path / "new"), dataset, source)


def test_init_from_refuses_another_model(tiny_run, tmp_path):
    source_dir, data_dir, _ = tiny_run
    out = str(tmp_path / "other")
    with pytest.raises(SystemExit) as stop:
        train.main(["--dataset", "tiny", "--variant", "adahan", "--epochs", "1",
                    "--data_dir", data_dir, "--output_dir", out, "--init_from", source_dir])
    assert stop.value.code == 2
    assert "--init_from" in str(stop.value) and "variant 'han' (now 'adahan')" in str(stop.value)
    assert folders.is_empty(out)  # Nothing written: the same command may use the folder.


def test_set_overrides_model_config_fields():
    args = train.parse_args(["--set", "aggregate_norm=false", "--set", "rnn=lstm",
                                "--set", "conv_filters=[8,8,8,8,8]", "--k", "3"])
    config = train.model_config(args, vocabulary_size=10, num_answers=4)
    assert (config.aggregate_norm, config.rnn, config.conv_filters) == (False, "lstm", (8,) * 5)
    assert (config.k, config.vocab_size, config.num_answers) == (3, 10, 4)


def test_restore_best_weights_is_default_with_an_opt_out(tmp_path):
    assert train.parse_args([]).restore_best_weights
    assert not train.parse_args(["--no-restore_best_weights"]).restore_best_weights
    # The default run: classic_open (where no animal can be answered by elimination), 4
    # epochs, batches of 32 images, Adam at 1e-3 (the reference preset: 5e-4), HAN, a
    # constant rate; a flag given overrides the preset's value.
    args = train.parse_args([])
    assert (args.dataset, args.preset, args.variant, args.lr_schedule) == (
        "classic_open", "default", "han", "constant")
    assert args.output_dir == os.path.join("runs", "classic_open-default-han-seed0")
    assert (args.epochs, args.batch_size, args.learning_rate) == (4, 32, 1e-3)
    reference = train.parse_args(["--preset", "reference"])
    assert (reference.epochs, reference.batch_size, reference.learning_rate) == (4, 32, 5e-4)
    assert train.parse_args(["--preset", "reference", "--learning_rate", "0.01"]).learning_rate == 0.01
    # Sort-of-CLEVR decays its rate (batch norm statistics), unless told otherwise.
    assert train.parse_args(["--preset", "sort_of_clevr"]).lr_schedule == "cosine"
    assert train.parse_args(["--preset", "sort_of_clevr", "--lr_schedule", "constant"]
                            ).lr_schedule == "constant"
    # Epochs default per dataset: 15 on randomized, 2 on tiny.
    assert train.parse_args(["--dataset", "randomized"]).epochs == 15
    assert train.parse_args(["--dataset", "tiny"]).epochs == 2
    # A folder dataset's run is named after the folder.
    (tmp_path / "my farm").mkdir()
    folder = train.parse_args(["--dataset", f"folder:{tmp_path / 'my farm'}"])
    assert folder.dataset == f"folder:{tmp_path / 'my farm'}"
    assert folder.output_dir == os.path.join("runs", "folder-my farm-default-han-seed0")


def test_learning_rate_schedules():
    args = train.parse_args(["--epochs", "3", "--learning_rate", "0.002"])
    assert args.lr_schedule == "constant"
    assert train.learning_rate_schedule(args, steps_per_epoch=10) == 0.002
    args = train.parse_args(["--epochs", "3", "--learning_rate", "0.002",
                             "--lr_schedule", "cosine"])
    schedule = train.learning_rate_schedule(args, steps_per_epoch=10)
    assert float(schedule(0)) == pytest.approx(0.002)
    assert float(schedule(15)) == pytest.approx(0.001)  # Half way: half the rate.
    assert float(schedule(30)) == pytest.approx(0.0, abs=1e-9)  # Decayed over the run.
    # The optimizer the trainer compiles follows that schedule over the run's steps: at a
    # quarter of 4 epochs x 10 steps, 0.5 * (1 + cos(pi / 4)) of the initial rate.
    args = train.parse_args(["--epochs", "4", "--learning_rate", "0.002",
                             "--lr_schedule", "cosine"])
    model = build_model(get_preset("default", image_size=64, vocab_size=9, num_answers=3,
                                   max_question_length=5))
    batches = tf.data.Dataset.from_tensors((
        {"image": np.zeros((1, 64, 64, 3), np.float32), "questions": np.zeros((1, 3, 5), np.int32)},
        np.zeros((1, 3), np.int32)))
    optimizer = train.compiled_training_model(args, model, batches, steps_per_epoch=10).optimizer
    assert isinstance(optimizer, keras.optimizers.Adam)
    for step, rate in [(0, 0.002), (10, 0.5 * (1 + math.cos(math.pi / 4)) * 0.002),
                       (20, 0.001), (40, 0.0)]:
        optimizer.iterations.assign(step)
        assert float(optimizer.learning_rate) == pytest.approx(rate, abs=1e-9), step
    # Constant: the same rate at every step.
    args = train.parse_args(["--epochs", "4", "--learning_rate", "0.002"])
    optimizer = train.compiled_training_model(args, model, batches, steps_per_epoch=10).optimizer
    optimizer.iterations.assign(30)
    assert float(optimizer.learning_rate) == pytest.approx(0.002)


def test_evaluate_reports_missing_pieces(tmp_path):
    result = subprocess.run([sys.executable, "-m", "keras_adahan.evaluate", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "is not a complete run folder: missing model.keras" in result.stderr


def test_question_rows_keep_each_questions_fields_together():
    arrays = data.QuestionArrays(
        images=np.zeros((2, 4, 4, 3), np.uint8), image_index=np.array([0, 0, 1]),
        questions=np.array([[0, 5], [0, 6], [0, 7]]), texts=["a", "b", "c"],
        answers=np.array([1, -1, 2]), types=np.array([0, 1, 2]), boxes=np.eye(3, 4))
    for keep in (arrays.answers >= 0, [0, 2]):  # Unanswered questions out; parity's subset.
        rows = arrays.rows(keep)
        assert rows.texts == ["a", "c"] and rows.image_index.tolist() == [0, 1]
        assert rows.questions[:, 1].tolist() == [5, 7] and rows.answers.tolist() == [1, 2]
        assert rows.types.tolist() == [0, 2] and rows.boxes.tolist() == [[1, 0, 0, 0],
                                                                          [0, 0, 1, 0]]
        assert rows.images is arrays.images
    assert arrays.rows(slice(0, 1)).texts == ["a"]


def test_grounding_hand_computed():
    # 2x2 grid split evenly; one question whose box covers the top-left quarter exactly.
    even = [0, 0.5, 1]
    presence = np.array([[5.0, 1.0, 9.0, 0.0]])
    boxes = np.array([[0.0, 0.0, 0.5, 0.5]])
    top, share, touches, kept = evaluate.grounding(
        presence, np.array([[1.0, 1.0, 0.0, 0.0]]), boxes, even)
    assert top.tolist() == [True]  # Cell 2 has more presence but was dropped.
    assert share.tolist() == [0.5]  # Of the 2 kept cells, one lies on the box.
    assert touches.tolist() == [True] and kept.tolist() == [True]
    top, share, touches, kept = evaluate.grounding(
        presence, np.array([[0.0, 1.0, 1.0, 0.0]]), boxes, even)
    assert top.tolist() == [False] and share.tolist() == [0.0] and touches.tolist() == [False]
    assert kept.tolist() == [False]
    # Cell 0 on the box is kept but not the top one (cell 2 is): kept, not grounded.
    top, share, touches, kept = evaluate.grounding(
        presence, np.array([[1.0, 0.0, 1.0, 0.0]]), boxes, even)
    assert top.tolist() == [False] and touches.tolist() == [False] and kept.tolist() == [True]
    # A box reaching a quarter into cell 1 (top right): its centre is off the box, its
    # area touches it.
    boxes = np.array([[0.0, 0.0, 0.5, 0.625]])
    top, share, touches, kept = evaluate.grounding(
        presence, np.array([[0.0, 1.0, 0.0, 0.0]]), boxes, even)
    assert top.tolist() == [False] and touches.tolist() == [True] and kept.tolist() == [True]
    assert share.tolist() == [0.25]
    # Uneven cells (`geometry.cell_edges`): edges at 0, 0.75, 1 make cell 1 the top
    # right quarter-wide column, which the box (x up to 0.625) no longer reaches.
    edges = [0, 0.75, 1]
    top, share, touches, kept = evaluate.grounding(
        presence, np.array([[0.0, 1.0, 0.0, 0.0]]), boxes, edges)
    assert touches.tolist() == [False] and kept.tolist() == [False]
    top, share, touches, kept = evaluate.grounding(
        presence, np.array([[1.0, 1.0, 0.0, 0.0]]), boxes, edges)
    assert top.tolist() == [True]  # Cell 0's centre, (0.375, 0.375), lies in the box.
    # Cell 0: 0.5 of its 0.75 rows, 0.625 of its 0.75 columns; cell 1: none. Mean 5/18.
    assert share == pytest.approx([5 / 18])


def test_training_model_is_saved_as_the_single_question_model(tiny_run):
    run_dir, _, _ = tiny_run
    model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
    assert set(model.input) == {"image", "question"}
    assert set(model.output) == {"answer", "presence", "mask"}


def test_grounding_per_type_and_per_answer():
    # 2x2 grid, 3 questions: top cell 0 each time; only the first two boxes cover it.
    presence = np.array([[9.0, 1.0, 1.0, 1.0]] * 3)
    outputs = {"answer": np.eye(2)[[0, 1, 1]], "presence": presence, "mask": np.ones((3, 4))}
    arrays = data.QuestionArrays(
        images=None, image_index=None, questions=None, texts=None,
        answers=np.array([0, 1, 1]), types=np.array([0, 0, 1]),
        boxes=np.array([[0.0, 0.0, 0.5, 0.5]] * 2 + [[0.5, 0.5, 1.0, 1.0]]))
    metrics = evaluate.compute_metrics(outputs, arrays, ["chicken", "sheep"],
                                       ["roof", "front"], "none", np.ones(3, bool), cell_edges=[0, 0.5, 1])
    assert metrics["grounding_top_cell_per_type"] == {"roof": 1.0, "front": 0.0}
    assert metrics["grounding_top_cell_per_answer"] == {"chicken": 1.0, "sheep": 0.5}
    assert "by answer         chicken 100.0%, sheep 50.0%" in evaluate.format_summary(metrics, "t")


def test_grounding_leaves_out_counts_and_empty_places():
    # Questions without one target object: a count, and one about an empty place
    # ("nothing", box (0, 0, 0, 0)). Only the first question is scored, and it is on target.
    presence = np.array([[9.0, 1.0, 1.0, 1.0]] * 3)
    outputs = {"answer": np.eye(3)[[0, 1, 2]], "presence": presence, "mask": np.ones((3, 4))}
    arrays = data.QuestionArrays(
        images=None, image_index=None, questions=None, texts=None,
        answers=np.array([0, 1, 2]), types=np.array([0, 1, 0]),
        boxes=np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]))
    answer_names, type_names = ["chicken", "2", "nothing"], ["roof", "count"]
    grounded = evaluate.grounded_questions(arrays, type_names, answer_names,
                                           registry.get_dataset("tiny"))
    assert grounded.tolist() == [True, False, False]
    metrics = evaluate.compute_metrics(outputs, arrays, answer_names, type_names, "none",
                                       grounded, cell_edges=[0, 0.5, 1])
    assert metrics["grounding_top_cell"] == 1.0
    assert metrics["grounding_top_cell_per_answer"] == {"chicken": 1.0}


def test_model_answer_labels_match_by_name():
    labels = evaluate.model_answer_labels(["chicken", "sheep"], ["sheep", "nothing", "chicken"], "d")
    assert labels.tolist() == [2, 0]
    with pytest.raises(ValueError, match=r"d has answers \['0'\] the model cannot give"):
        evaluate.model_answer_labels(["chicken", "0"], ["chicken"], "d")


def test_evaluate_on_another_config(tiny_run):
    run_dir, data_dir, metrics = tiny_run
    run = run_files.load_run(run_dir)
    # Evaluated as if "tiny" were another config: the labels are matched by name and the
    # figures go to their own file, leaving the run's metrics.json alone.
    before = open(os.path.join(run_dir, "metrics.json")).read()
    dataset = data.prepare_dataset("tiny", data_dir, build=False)
    other = evaluate.evaluate(run.model, dataset, run.vocabulary, answers=run.answers)
    evaluate.write_evaluation(other, run_dir)
    assert other.metrics["accuracy"] == pytest.approx(metrics["accuracy"])
    assert json.load(open(os.path.join(run_dir, "metrics_tiny.json"))) == other.metrics
    assert os.path.exists(os.path.join(run_dir, "plots", "attention_tiny.png"))
    assert open(os.path.join(run_dir, "metrics.json")).read() == before
    # The same model with its answers numbered back to front (as a converted run's): by
    # name, the same figures.
    layer = run.model.get_layer("answer_head").get_layer("answer_logits")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel[:, ::-1], bias[::-1]])
    reordered = evaluate.evaluate(run.model, dataset, run.vocabulary, answers=run.answers[::-1])
    assert reordered.metrics["accuracy"] == pytest.approx(metrics["accuracy"])
    assert reordered.metrics["accuracy_per_type"] == pytest.approx(metrics["accuracy_per_type"])
    # An empty --dataset read as "not given": the run's own was evaluated.
    with pytest.raises(SystemExit, match="argument --dataset: unknown dataset ''"):
        evaluate.main([run_dir, "--data_dir", data_dir, "--dataset", ""])
    # A config with answers the model cannot give is refused, naming them.
    data.prepare_dataset("tiny_randomized", data_dir)
    with pytest.raises(SystemExit, match=r"has answers \['0', '1', '2', '3'\] the model cannot"):
        evaluate.main([run_dir, "--data_dir", data_dir, "--dataset", "tiny_randomized"])
