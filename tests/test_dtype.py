"""`--dtype`: training under mixed_bfloat16, saving and evaluating in float32."""

import os
import types

import keras
import numpy as np
import pytest

from keras_adahan import cli
from keras_adahan import run_files
from keras_adahan import train
from keras_adahan.model import build_model, build_training_model
from keras_adahan.presets import get_preset


def test_dtype_flag_default_and_choices():
    assert train.parse_args(["--dataset", "tiny"]).dtype == train.DEFAULT_DTYPE
    assert train.parse_args(["--dataset", "tiny", "--dtype", "mixed_bfloat16"]).dtype == (
        "mixed_bfloat16")
    with pytest.raises(SystemExit):
        train.parse_args(["--dataset", "tiny", "--dtype", "float16"])


@pytest.mark.parametrize("speedup, chosen", [(0.7, "float32"), (1.4, "float32"),
                                             (1.5, "mixed_bfloat16"), (3.9, "mixed_bfloat16")])
def test_auto_dtype_follows_the_measured_bfloat16_speedup(monkeypatch, capsys, speedup, chosen):
    monkeypatch.setattr(train.compute, "bfloat16_speedup", lambda: speedup)
    args = train.parse_args(["--dataset", "tiny"])
    assert train.training_dtype(args, args.output_dir) == chosen
    assert f"--dtype auto: {chosen} (a bfloat16 matmul runs at {speedup:.2f}x" in (
        capsys.readouterr().out)


def test_explicit_dtype_and_multiworker_do_not_measure(monkeypatch, tmp_path):
    def measure():
        raise AssertionError("measured")

    monkeypatch.setattr(train.compute, "bfloat16_speedup", measure)
    for dtype in ("float32", "mixed_bfloat16"):
        args = train.parse_args(["--dataset", "tiny", "--dtype", dtype])
        assert train.training_dtype(args, args.output_dir) == dtype
    # Workers measuring apart could pick different policies; and only the chief resumes
    # (the others train into a folder of their own), so not the run's own either.
    run_files.write_json(tmp_path / "config.json", {"train": {"dtype": "mixed_bfloat16"}})
    for resume in ([], ["--resume"]):
        args = train.parse_args(["--dataset", "tiny", "--distribute", "multiworker",
                                 "--output_dir", str(tmp_path), *resume])
        assert train.training_dtype(args, str(tmp_path)) == "float32"


def test_auto_dtype_is_float32_where_bfloat16_cannot_run(monkeypatch, capsys):
    def measure():
        raise RuntimeError("no bfloat16 kernel")

    monkeypatch.setattr(train.compute, "bfloat16_speedup", measure)
    args = train.parse_args(["--dataset", "tiny"])
    assert train.training_dtype(args, args.output_dir) == "float32"
    assert "--dtype auto: float32 (a bfloat16 matmul could not run here)" in (
        capsys.readouterr().out)


def test_auto_dtype_resumes_as_the_run_began(monkeypatch, tmp_path):
    monkeypatch.setattr(train.compute, "bfloat16_speedup", lambda: 0.7)  # float32 here.
    run_files.write_json(tmp_path / "config.json", {"train": {"dtype": "mixed_bfloat16"}})
    args = train.parse_args(["--dataset", "tiny", "--output_dir", str(tmp_path), "--resume"])
    assert train.training_dtype(args, str(tmp_path)) == "mixed_bfloat16"
    args = train.parse_args(["--dataset", "tiny", "--output_dir", str(tmp_path)])
    assert train.training_dtype(args, str(tmp_path)) == "float32"  # Not resumed: measured.


@pytest.mark.parametrize("config, message", [
    ({"train": {"dtype": "float16"}}, "config.json has dtype 'float16', not one of float32, "
                                      "mixed_bfloat16; pass --dtype"),
    ({"train": {"dtype": None}}, "config.json has dtype None"),
    ({"train": []}, "cannot read .*config.json \\(\"train\" is a list, not an object\\)"),
    ([], "cannot read .*config.json"),
])
def test_resume_refuses_a_config_it_cannot_read_in_one_line(monkeypatch, tmp_path, config,
                                                            message):
    monkeypatch.setattr(train.compute, "bfloat16_speedup", lambda: 2.0)
    run_files.write_json(tmp_path / "config.json", config)
    args = train.parse_args(["--dataset", "tiny", "--output_dir", str(tmp_path), "--resume"])
    with pytest.raises(cli.UserError, match=message):
        train.training_dtype(args, str(tmp_path))


def test_a_run_begun_in_bfloat16_resumes_in_bfloat16(monkeypatch, capsys, tmp_path):
    data_dir, run_dir = str(tmp_path / "tfds"), str(tmp_path / "run")
    common = ["--dataset", "tiny", "--data_dir", data_dir, "--output_dir", run_dir]
    train.main([*common, "--epochs", "1", "--dtype", "mixed_bfloat16"])
    monkeypatch.setattr(train.compute, "bfloat16_speedup", lambda: 0.7)  # float32 here.
    capsys.readouterr()
    train.main([*common, "--epochs", "2", "--resume"])
    assert "--dtype auto: mixed_bfloat16, as the run being resumed" in capsys.readouterr().out
    assert run_files.read_json(os.path.join(run_dir, "config.json"))["train"]["dtype"] == (
        "mixed_bfloat16")


def test_matmul_flops_counts_two_flops_per_multiply_add(monkeypatch):
    # A clock that advances 1 s per reading makes every timed call take 1 s.
    ticks = iter(range(1000))
    monkeypatch.setattr(train.compute, "time", types.SimpleNamespace(
        perf_counter=lambda: next(ticks)))
    assert train.compute.matmul_flops("float32", size=8, seconds=0) == 2 * 8**3


def test_mixed_bfloat16_trains_and_gives_a_float32_model():
    config = get_preset("default", vocab_size=10, num_answers=3, image_size=32,
                        max_question_length=4)
    keras.utils.set_random_seed(0)
    with train.dtype_policy("mixed_bfloat16"):
        model = build_model(config)
        train_model = build_training_model(model, 2)
    assert keras.config.dtype_policy().name == "float32"  # Restored after the block.
    assert model.get_layer("image_encoder").get_layer("conv_1").compute_dtype == "bfloat16"
    assert all(w.dtype == "float32" for w in model.weights)  # Mixed: float32 variables.
    train_model.compile(optimizer="adam",
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    inputs = {"image": rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32"),
              "questions": rng.integers(1, 10, (4, 2, 4)).astype("int32")}
    history = train_model.fit(inputs, rng.integers(0, 3, (4, 2)), epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()

    copy = train.float32_model(model)
    assert copy.dtype_policy.name == "float32"
    assert copy.get_layer("image_encoder").get_layer("conv_1").compute_dtype == "float32"
    for a, b in zip(copy.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    single = {"image": inputs["image"], "question": inputs["questions"][:, 0]}
    expected = model.predict_on_batch(single)
    got = copy.predict_on_batch(single)
    assert got["answer"].dtype == np.float32
    # bfloat16 keeps 8 bits of mantissa: close, not equal. Where two presences are within
    # its rounding, HAN may keep another cell (seen on an AMD CPU): compare the questions
    # whose kept cells agree, most of them.
    same_cells = (got["mask"] == expected["mask"]).all(1)
    assert same_cells.sum() >= 3
    np.testing.assert_allclose(got["answer"][same_cells],
                               expected["answer"][same_cells].astype("float32"),
                               atol=0.1 * (np.abs(got["answer"]).max() + 1))
    assert train.float32_model(copy) is copy
