"""The trainer and evaluation end to end, on the tiny barn_vqa config."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_adahan import data, evaluate, run_files, train
from keras_adahan.datasets import registry


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
    run = run_files.load_run(run_dir)
    assert run.answers == ["chicken", "sheep", "cow", "pig"]
    assert run.config["train"]["dataset"] == "tiny"
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
    assert 0 <= metrics["grounding_top_cell"] <= 1


def test_tokenizer_and_labels_are_the_training_ones(tiny_run):
    run_dir, _, _ = tiny_run
    words = json.load(open(os.path.join(run_dir, "vocabulary.json")))["words"]
    assert {"what", "animal", "roof", "barn", "hay"} <= set(words)


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
    assert "accuracy" in result.stdout and "grounding top cell" in result.stdout
    assert json.load(open(os.path.join(run_dir, "metrics_validation.json")))["split"] == "validation"
    # Re-evaluating the test split rewrites metrics.json with the same figures; what
    # training recorded lives in training.json, which evaluation leaves alone.
    training = open(os.path.join(run_dir, "training.json")).read()
    evaluate.main([run_dir, "--data_dir", data_dir])
    again = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert again == metrics
    assert open(os.path.join(run_dir, "training.json")).read() == training


@pytest.mark.parametrize("argv, message", [
    (["--variant", "hard"], "argument --variant: invalid choice: 'hard'"),
    (["--epochs", "0"], "--epochs must be a positive integer, received 0"),
    (["--k", "0"], "`k` must be in"),
    (["--threshold", "1.5"], "`threshold` must be in (0, 1], received 1.5"),
    (["--dataset", "farm"], "argument --dataset: invalid choice: 'farm'"),
    (["--set", "bogus=1"], "Unknown ModelConfig field(s) ['bogus']; allowed: ['aggregate_norm'"),
    (["--set", "aggregate_norm=7"], "`aggregate_norm` must be a bool, received 7"),
    (["--set", "rnn"], "--set takes FIELD=VALUE, received 'rnn'"),
])
def test_bad_flags_give_clear_errors(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit):
        train.main(["--dataset", "tiny", *argv] + ["--data_dir", str(tmp_path / "tfds"),
                                                   "--output_dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert message in err, err
    # Refused before anything was written: no dataset, no run folder.
    assert not os.path.exists(tmp_path / "run") and not os.path.exists(tmp_path / "tfds")


def test_set_overrides_model_config_fields():
    args = train.parse_args(["--set", "aggregate_norm=false", "--set", "rnn=lstm",
                                "--set", "conv_filters=[8,8,8,8,8]", "--k", "3"])
    config = train.model_config(args, vocabulary_size=10, num_answers=4)
    assert (config.aggregate_norm, config.rnn, config.conv_filters) == (False, "lstm", (8,) * 5)
    assert (config.k, config.vocab_size, config.num_answers) == (3, 10, 4)


def test_restore_best_weights_is_default_with_an_opt_out():
    assert train.parse_args([]).restore_best_weights
    assert not train.parse_args(["--no-restore_best_weights"]).restore_best_weights


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


def test_evaluate_reports_missing_pieces(tmp_path):
    result = subprocess.run([sys.executable, "-m", "keras_adahan.evaluate", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "is not a complete run folder: missing model.keras" in result.stderr


def test_grounding_hand_computed():
    # 2x2 grid; one question whose box covers the top-left quarter exactly.
    presence = np.array([[5.0, 1.0, 9.0, 0.0]])
    boxes = np.array([[0.0, 0.0, 0.5, 0.5]])
    top, share, touches = evaluate.grounding(presence, np.array([[1.0, 1.0, 0.0, 0.0]]), boxes, 2)
    assert top.tolist() == [True]  # Cell 2 has more presence but was dropped.
    assert share.tolist() == [0.5]  # Of the 2 kept cells, one lies on the box.
    assert touches.tolist() == [True]
    top, share, touches = evaluate.grounding(presence, np.array([[0.0, 1.0, 1.0, 0.0]]), boxes, 2)
    assert top.tolist() == [False] and share.tolist() == [0.0] and touches.tolist() == [False]
    # A box reaching a quarter into cell 1 (top right): its centre is off the box, its
    # area touches it.
    boxes = np.array([[0.0, 0.0, 0.5, 0.625]])
    top, share, touches = evaluate.grounding(presence, np.array([[0.0, 1.0, 0.0, 0.0]]), boxes, 2)
    assert top.tolist() == [False] and touches.tolist() == [True]
    assert share.tolist() == [0.25]


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
                                       ["roof", "front"], "none", np.ones(3, bool), grid_size=2)
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
                                       grounded, grid_size=2)
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
    # A config with answers the model cannot give is refused, naming them.
    data.prepare_dataset("tiny_randomized", data_dir)
    with pytest.raises(SystemExit, match=r"has answers \['0', '1', '2', '3'\] the model cannot"):
        evaluate.main([run_dir, "--data_dir", data_dir, "--dataset", "tiny_randomized"])
