"""Sort-of-CLEVR: scenes checked against what their pixels show, and the trainer on them."""

import json
import re

import numpy as np
import pytest
from conftest import load_benchmark

from keras_adahan import train
from keras_adahan.datasets import registry
from keras_adahan.datasets.sort_of_clevr import scenes

COLORS = {  # The public generator's colours, restated.
    "red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255),
    "orange": (255, 156, 0), "gray": (128, 128, 128), "yellow": (255, 255, 0),
}


def objects_in(image):
    """{colour: (centre (x, y), shape, pixel bounding box)} read from the pixels alone."""
    found = {}
    for name, rgb in COLORS.items():
        ys, xs = np.nonzero((image == rgb).all(-1))
        assert len(xs), f"no {name} object"
        box = (xs.min(), ys.min(), xs.max(), ys.max())
        fill = len(xs) / ((box[2] - box[0] + 1) * (box[3] - box[1] + 1))
        assert fill > 0.97 or 0.65 < fill < 0.85, f"{name}: fill {fill:.2f} is neither shape"
        found[name] = ((xs.mean(), ys.mean()), "square" if fill > 0.97 else "circle", box)
    return found


def answer_from_pixels(question, objects, side):
    color = next(c for c in COLORS if f" {c} object" in question)
    (x, y), shape, _ = objects[color]
    others = {c: np.hypot(*np.subtract(o[0], (x, y))) for c, o in objects.items() if c != color}
    if question.startswith("What is the shape of the object closest"):
        return objects[min(others, key=others.get)][1]
    if question.startswith("What is the shape of the object furthest"):
        return objects[max(others, key=others.get)][1]
    if question.startswith("What is the shape"):
        return shape
    if question.startswith("How many objects"):
        return str(sum(o[1] == shape for o in objects.values()))
    if re.search("on the left", question):
        return "yes" if x < side / 2 else "no"
    assert "on the top" in question, question
    return "yes" if y < side / 2 else "no"


@pytest.mark.parametrize("config_name", ["default", "large"])
def test_answers_match_what_the_image_shows(config_name):
    config = scenes.CONFIGS[config_name]
    side = config.image_size
    subtypes = []
    for index in range(40):
        scene = scenes.render_scene(config, "train", index)
        assert scene.image.shape == (side, side, 3) and scene.image.dtype == np.uint8
        objects = objects_in(scene.image)
        # Six objects, none touching: their bounding boxes, grown by a pixel, are disjoint.
        boxes = [o[2] for o in objects.values()]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert a[2] + 1 < b[0] or b[2] + 1 < a[0] or a[3] + 1 < b[1] or b[3] + 1 < a[1]
        # Nothing but the six colours on white.
        known = np.zeros(scene.image.shape[:2], bool)
        for rgb in list(COLORS.values()) + [(255, 255, 255)]:
            known |= (scene.image == rgb).all(-1)
        assert known.all()
        assert len(scene.questions) == 20
        for number, q in enumerate(scene.questions):
            assert q.answer == answer_from_pixels(q.text, objects, side), (index, q.text)
            assert (q.type in ("shape", "left", "top")) == (number < 10)  # 10 + 10.
            # The box is the named object's: its pixels fill it exactly.
            x0, y0, x1, y1 = objects[q.color][2]
            np.testing.assert_allclose(q.box, np.array([y0, x0, y1 + 1, x1 + 1]) / side)
            subtypes.append(q.type)
    assert set(subtypes) == set(scenes.QUESTION_TYPES)


def test_scenes_are_deterministic_and_differ():
    config = scenes.CONFIGS["default"]
    first = scenes.render_scene(config, "test", 3)
    assert np.array_equal(first.image, scenes.render_scene(config, "test", 3).image)
    assert first.questions == scenes.render_scene(config, "test", 3).questions
    assert not np.array_equal(first.image, scenes.render_scene(config, "test", 4).image)
    assert not np.array_equal(first.image, scenes.render_scene(config, "train", 3).image)


def test_more_scenes_extends_default_and_keeps_its_test_images():
    default, more = scenes.CONFIGS["default"], scenes.CONFIGS["more_scenes"]
    assert more.train == 10 * default.train and more.test == default.test
    for split, index in (("train", 0), ("train", default.train - 1), ("test", 7)):
        ours = scenes.render_scene(more, split, index)
        theirs = scenes.render_scene(default, split, index)
        assert np.array_equal(ours.image, theirs.image) and ours.questions == theirs.questions
    assert registry.DATASETS["sort_of_clevr_more_scenes"].title == "sort_of_clevr/more_scenes"


def test_trainer_takes_sort_of_clevr_and_reports_adahan_cells_per_type(tmp_path):
    run_dir = tmp_path / "run"
    metrics = train.main([
        "--dataset", "sort_of_clevr_tiny", "--preset", "sort_of_clevr", "--variant", "adahan",
        "--min_cells", "1", "--set", "max_cells=7", "--epochs", "1",
        "--data_dir", str(tmp_path / "tfds"), "--output_dir", str(run_dir)])
    assert set(metrics["accuracy_per_type"]) == set(scenes.QUESTION_TYPES)
    assert metrics["num_questions"] == 4 * 20  # The tiny config's 4 test images.
    assert metrics["num_cells"] == 25  # 75 px through four stride-2 convs: 5x5.
    per_type = metrics["kept_cells_per_type"]
    assert set(per_type) == set(scenes.QUESTION_TYPES)
    assert all(1 <= kept <= 7 for kept in per_type.values())  # The floor and the ceiling.
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["kept_cells_per_type"] == per_type
    assert (run_dir / "plots" / "kept_cells.png").stat().st_size > 0


def test_warmup_epochs_weigh_only_the_warmup_types(tmp_path):
    from keras_adahan import data

    dataset = data.prepare_dataset("sort_of_clevr_tiny", str(tmp_path / "tfds"))
    vocabulary = data.build_vocabulary(dataset)
    shape = dataset.type_names.index("shape")
    batches = data.training_batches(dataset, "train", vocabulary, 75, 12, batch_size=8,
                                    epochs=(0, 2), warmup=([shape], 1))
    (warmup_inputs, _, warmup_weights), (inputs, _, weights) = list(batches)  # 8 images.
    shape_questions = vocabulary.encode_batch(
        [f"What is the shape of the {color} object?" for color in COLORS], 12)
    is_shape_question = (warmup_inputs["questions"].numpy()[:, :, None, :]
                         == shape_questions).all(-1).any(-1)
    assert 0 < is_shape_question.mean() < 0.5
    np.testing.assert_array_equal(warmup_weights.numpy(), is_shape_question.astype(np.float32))
    np.testing.assert_array_equal(weights.numpy(), np.ones((8, 20), np.float32))
    # The epoch after the warm-up is the same images, in its own order, every question weighed.
    assert inputs["image"].shape == warmup_inputs["image"].shape


def test_trainer_warmup_flags_name_the_dataset_types(tmp_path):
    argv = ["--dataset", "sort_of_clevr_tiny", "--preset", "sort_of_clevr", "--epochs", "2",
            "--warmup_epochs", "1", "--data_dir", str(tmp_path / "tfds"),
            "--output_dir", str(tmp_path / "run")]
    with pytest.raises(SystemExit, match=r"--warmup_types: 'shapes' is not a question type "
                                         r"of sort_of_clevr/tiny \(shape, left, top, closest"):
        train.main(argv + ["--warmup_types", "shapes"])
    assert not (tmp_path / "tfds").exists()  # Refused before the build.


def test_relational_probe_questions_answer_from_the_objects():
    """benchmarks/relational_probe.py: each answer is the shape of the object closest to
    (furthest from) the named one, and the shortcut flag says whether the commonest shape of
    the other five is that answer; checked object by object here."""
    probe = load_benchmark("relational_probe")
    features, question, answer, kind, shortcut = probe.make_questions(
        np.random.default_rng(0), 300)
    assert set(kind) == {0, 1} and 0 < shortcut.mean() < 1
    for n in range(300):
        named = int(question[n, :6].argmax())
        assert question[n, 6 + kind[n]] == 1 and features[n, named, named] == 1
        others = [i for i in range(6) if i != named]
        distances = [np.hypot(*(features[n, i, 8:] - features[n, named, 8:])) for i in others]
        pick = min if kind[n] == 0 else max
        target = others[distances.index(pick(distances))]
        assert answer[n] == features[n, target, 6:8].argmax()
        shape_1 = sum(int(features[n, i, 7]) for i in others)
        assert shortcut[n] == ((1 if shape_1 >= 3 else 0) == answer[n])
    # Seen by cell, the centres are those of the 5x5 grid's cells.
    features, *_ = probe.make_questions(np.random.default_rng(0), 50, coordinates="cell")
    np.testing.assert_allclose(np.unique(features[..., 8:]), [-0.8, -0.4, 0.0, 0.4, 0.8],
                               atol=1e-6)


def test_relational_probe_trains_every_step_asked_and_refuses_bad_flags(monkeypatch, capsys):
    probe = load_benchmark("relational_probe")
    monkeypatch.setattr(probe, "TEST_QUESTIONS", 40)
    trained, build = [], probe.build

    def counting_build(layer_norm):
        model = build(layer_norm)
        fit = model.fit
        model.fit = lambda x, y, **kwargs: trained.append(len(y)) or fit(x, y, **kwargs)
        return model

    monkeypatch.setattr(probe, "build", counting_build)
    probe.main(["--steps", "13", "--batch_size", "2"])  # Trained 10 steps: 13 // 10 ten times.
    assert sum(trained) == 13 * 2 and len(trained) == 10
    steps = [int(line.split()[0]) for line in capsys.readouterr().out.splitlines()[2:]]
    assert len(steps) == 10 and steps[-1] == 13 and steps == sorted(steps)
    for argv, message in [(["--seed", "-1"], "argument --seed: expected a seed in [0, 2**32)"),
                          (["--scenes", "1000000000000"],
                           "would take 134,111 GiB of memory; expected under 8 GiB"),
                          (["--steps", "1" + "0" * 400],  # No float holds it.
                           "0,000 GiB of memory; expected under 8 GiB")]:
        with pytest.raises(SystemExit, match=re.escape(message)):  # Were tracebacks.
            probe.main(argv)


def test_sort_of_clevr_cells_are_boxed_where_they_look(capsys):
    """Four 3x3 convolutions at stride 2, 'same' padding, 75 px: TensorFlow pads (out - 1)
    * 2 + 3 - in rows, the odd one after, so the layers map output row i to input rows
    centred at 2i, 2i + 1, 2i, 2i + 1: cell j is centred at pixel 16 j + 10 (10.5 with the
    pixel's own half), not at the even split's 15 j + 7.5. The model's boxes say so, and the
    gradients of its untrained encoder agree."""
    import keras

    alignment = load_benchmark("cell_alignment")
    from keras_adahan.model import VQAModel
    from keras_adahan.presets import PRESETS

    keras.utils.set_random_seed(0)
    model = VQAModel(PRESETS["sort_of_clevr"])
    centres = 16 * np.arange(5) + 10.5
    expected = np.concatenate([[0], (centres[:-1] + centres[1:]) / 2, [75]]) / 75
    np.testing.assert_allclose(model.cell_edges, expected, rtol=1e-12)
    measured = alignment.report("sort_of_clevr", model.get_layer("image_encoder"), 75,
                                model.cell_edges)
    np.testing.assert_allclose(measured, expected, atol=1.5 / 75)  # Within 1.5 px.
    # 42.5 px: on its box's centre, 0.33 cells past the even split's 37.5.
    assert "middle cell 2: 4" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="argument --run: expected a run folder or its "
                                         "model.keras, received an empty string"):
        alignment.main(["--run", ""])  # Read as "not given", it measured every preset.


def test_every_table_setup_is_a_valid_trainer_configuration():
    table = load_benchmark("sort_of_clevr_table")
    relational = set()
    for name, (_, flags) in table.SETUPS.items():
        args = train.parse_args(["--dataset", "sort_of_clevr", "--preset", "sort_of_clevr",
                                 "--epochs", "18", *flags])
        config = train.model_config(args, vocabulary_size=30, num_answers=10)
        if config.aggregation == "relational":
            relational.add(name)
        assert ("--warmup_types" in flags) == name.endswith("_warmup"), name
    assert {"rn", "han_rn", "adahan_rn", "soft_rn", "han_rn_warmup"} <= relational
    assert not {"cnn_sum", "han_sum", "han_sum_warmup"} & relational
    # A curriculum's second run has its first run's model: --init_from takes its weights.
    for name, (first, first_dataset, _, dataset, _, flags) in table.CURRICULA.items():
        assert {first_dataset, dataset} <= set(registry.DATASETS)
        configs = [train.model_config(train.parse_args(
            ["--dataset", dataset, "--preset", "sort_of_clevr", "--epochs", "30", *more]),
            vocabulary_size=30, num_answers=10) for more in (table.SETUPS[first][1],
                                                               table.SETUPS[name][1] + flags)]
        assert configs[0] == configs[1], name


def test_curriculum_starts_its_second_run_from_the_first(tmp_path, monkeypatch, capfd):
    table = load_benchmark("sort_of_clevr_table")
    # The best run's curriculum for AdaHAN, shortened and on the tiny config for both stages.
    def curriculum(first_epochs):
        return {"adahan_rn_image_more_scenes": (
            "adahan_rn_image_warmup", "sort_of_clevr_tiny", first_epochs, "sort_of_clevr_tiny",
            2, ["--warmup_types", "closest", "furthest", "--warmup_epochs", "1"])}
    monkeypatch.setattr(table, "CURRICULA", curriculum(13))
    runs = tmp_path / "runs"
    argv = ["--setups", "adahan_rn_image_more_scenes", "--seeds", "0",
            "--data_dir", str(tmp_path / "tfds"), "--runs_dir", str(runs), "--quiet"]
    table.main(argv)
    first = runs / "sort_of_clevr_tiny-adahan_rn_image_warmup-seed0"
    second = runs / "sort_of_clevr_tiny-adahan_rn_image_more_scenes-seed0"
    config = json.loads((second / "config.json").read_text())["train"]
    assert config["init_from"] == str(first) and config["epochs"] == 2
    assert json.loads((first / "config.json").read_text())["train"]["epochs"] == 13
    assert len((second / "history.csv").read_text().splitlines()) == 1 + 2
    out, err = capfd.readouterr()
    assert "| AdaHAN+RN, g reads the image's cells; then closest and furthest" in out
    # The trainers built the data quietly, though this process's TensorFlow had set
    # TF_CPP_MIN_LOG_LEVEL for them (TFDS logged "Variant folder ... has no dataset_info").
    assert "WARNING" not in err, err
    # Its threshold study reads the second run's folder, named after its own dataset.
    assert "adahan_rn_image_more_scenes, seed 0 - the softmax threshold alone" in out
    # A finished first run of another length is not taken for this one.
    monkeypatch.setattr(table, "CURRICULA", curriculum(14))
    (second / "metrics.json").unlink()
    with pytest.raises(SystemExit, match="holds a run trained with other settings: epochs 13 "
                       r"\(asked 14\); pass another --runs_dir"):
        table.main(argv)
    monkeypatch.setattr(table, "CURRICULA", curriculum(13))
    # Nor one trained in another dtype.
    with pytest.raises(SystemExit, match="with other settings: dtype 'float32' "
                       r"\(asked 'mixed_bfloat16'\);"):
        table.main(argv + ["--", "--dtype", "mixed_bfloat16"])
    # A run stopped before its evaluation is resumed, not trained again.
    capfd.readouterr()
    table.main(argv[:-1])  # Not --quiet: the trainer's lines are read below.
    assert (second / "metrics.json").exists()
    trainer = capfd.readouterr()
    assert re.search(r"Restored \S+epoch-0002.weights.h5: 2 epochs done", trainer.out)
    # No TensorFlow notice among them (the FLOP count's v1 profiler logs deprecations; a
    # trainer started by a Python process that imported TensorFlow showed them).
    assert "WARNING" not in trainer.err, trainer.err
    # A curriculum names its datasets and epochs.
    with pytest.raises(SystemExit, match="adahan_rn_image_more_scenes set their own datasets "
                                         "and epochs"):
        table.main(argv + ["--epochs", "3"])


def test_coverage_needs_the_objects_the_generator_answered_from():
    table = load_benchmark("sort_of_clevr_table")
    config = scenes.CONFIGS["default"]
    for index in range(5):
        scene = scenes.render_scene(config, "test", index)
        for question in scene.questions:
            needed = table.needed_objects(scene, question)
            if question.type != "count":
                assert scene.objects[needed[0]].color == question.color
            if question.type in ("closest", "furthest"):
                assert len(needed) == 2 and needed[1] != needed[0]
                assert scene.objects[needed[1]].shape == question.answer
            elif question.type == "count":
                assert needed == list(range(6))
            else:
                assert len(needed) == 1


def test_fewest_covering_cells():
    table = load_benchmark("sort_of_clevr_table")
    touches = np.array([[1, 1, 0, 0],   # Object 0 on cells 0 and 1,
                        [0, 1, 1, 0],   # object 1 on cells 1 and 2,
                        [0, 0, 0, 1]],  # object 2 on cell 3: cells 1 and 3 touch all.
                       dtype=bool)
    assert table._fewest_covering_cells(touches) == 2
    assert table._fewest_covering_cells(np.eye(3, dtype=bool)) == 3


def test_coverage_of_a_run_that_keeps_every_cell_is_complete(tmp_path, capsys):
    table = load_benchmark("sort_of_clevr_table")
    run_dir = tmp_path / "run"
    train.main(["--dataset", "sort_of_clevr_tiny", "--preset", "sort_of_clevr", "--variant",
                "none", "--epochs", "1", "--data_dir", str(tmp_path / "tfds"),
                "--output_dir", str(run_dir), "--set", "image_size=64"])
    # The scenes are drawn at 75 px: resized as the input pipeline does (was a shape error).
    per_type, fewest, commonest, right, images = table.coverage(str(run_dir))
    assert images == 4  # The tiny config's test split.
    assert per_type == {name: 1.0 for name in scenes.QUESTION_TYPES}
    # Every question covered, on all 4 test images: the evaluation's accuracy per type.
    accuracy = json.loads((run_dir / "metrics.json").read_text())["accuracy_per_type"]
    for name in scenes.QUESTION_TYPES:
        assert right[name][0] == pytest.approx(accuracy[name]) and right[name][1] is None
    assert sum(fewest.values()) == 4 and set(fewest) <= {1, 2, 3, 4, 5, 6}
    assert set(commonest) == {"closest", "furthest"}
    # The run's model.keras is read as its folder, as evaluate reads it (was "is a file").
    capsys.readouterr()
    table.main(["--coverage", str(run_dir / "model.keras")])
    assert "4 test images (%): shape 100" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--setups", "han_rn_warmup", "--epochs", "12"],
     "han_rn_warmup warms up for 12 epochs: pass --epochs above 12"),
    (["--setups", "han_rn", "--epochs", "0"],  # Was the trainer's 20.
     "argument --epochs: expected a positive integer, received '0'"),
    (["--setups", "han_rn", "--seeds", "0", "-1"],  # Was refused after seed 0 trained.
     "argument --seeds: expected a seed in [0, 2**32), received '-1'"),
    (["--setups", "han_rn", "--seeds", "1", "0", "1"],  # Printed "± 0.0", as of two seeds.
     "argument --seeds: 1 given more than once"),
    # The modes read one run; the table's flags did nothing there.
    (["--coverage", "RUN", "--epochs", "4", "--seeds", "7"],
     "--seeds, --epochs, --runs_dir: not used by --coverage, which reads one run"),
    (["--colour_probe", "RUN", "--data_dir", "d", "--", "--learning_rate", "3e-4"],
     "--runs_dir, --data_dir, flags after --: not used by --colour_probe, which reads one run"),
    # An empty path read as "not given": it trained the whole table.
    (["--coverage", ""],
     "argument --coverage: expected a run folder or its model.keras, received an empty string"),
])
def test_table_refuses_bad_flags_before_training(tmp_path, argv, message):
    table = load_benchmark("sort_of_clevr_table")
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as stop:
        table.main(["--runs_dir", str(runs), *argv])
    assert message in str(stop.value), str(stop.value)
    assert not runs.exists()


def test_table_names_a_damaged_result_file(tmp_path):
    table = load_benchmark("sort_of_clevr_table")
    for name in ("metrics", "training", "config"):
        (tmp_path / f"{name}.json").write_text("{}")
    (tmp_path / "training.json").write_text('{"seconds": 1')  # Cut off mid-write by hand.
    with pytest.raises(ValueError, match=r"training\.json' is not a readable JSON file"):
        table.load_result(str(tmp_path))
    (tmp_path / "training.json").write_text('{"seconds": 1}')
    (tmp_path / "metrics.json").write_text("[1]")  # JSON, but no evaluation's.
    with pytest.raises(ValueError, match=r"metrics\.json' holds no 'accuracy_per_type'"):
        table.load_result(str(tmp_path))
