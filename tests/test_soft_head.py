"""The training-only soft head (`ModelConfig.soft_head_weight`): what it trains, and that
the trained model answers from the kept cells alone."""

import csv

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_adahan import ModelConfig
from keras_adahan import VQAModel
from keras_adahan import train
from keras_adahan.model import build_training_model

# 8x8 images through one 2x2 conv of stride 2: a 4x4 grid whose cells see disjoint 2x2
# pixel blocks, and no batch norm, so a pixel reaches the loss only through its own cell.
TINY = dict(image_size=8, conv_filters=(16,), conv_kernel_sizes=(2,), conv_strides=(2,),
            conv_batch_norm=False, fusion="multiply", fusion_units=(8,), aggregation="sum",
            classifier_units=(8,), vocab_size=10, max_question_length=4, num_answers=3)


def pixel_gradients(config, seed=0):
    """|d loss / d pixel| summed per cell (B, 16), and the cells kept for some question."""
    keras.utils.set_random_seed(seed)
    model = VQAModel(config)
    train_model = build_training_model(model, questions_per_image=2)
    train_model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(seed)
    image = tf.constant(rng.uniform(0, 255, (3, 8, 8, 3)), tf.float32)
    questions = tf.constant(rng.integers(2, 10, (3, 2, 4)), tf.int32)
    labels = rng.integers(0, 3, (3, 2)).astype("int32")
    with tf.GradientTape() as tape:
        tape.watch(image)
        outputs = train_model({"image": image, "questions": questions}, training=True)
        loss = train_model.compute_loss(y=labels, y_pred=outputs)
    gradient = np.abs(tape.gradient(loss, image).numpy()).sum(-1)  # (B, 8, 8)
    per_cell = gradient.reshape(3, 4, 2, 4, 2).sum((2, 4)).reshape(3, 16)  # Row-major cells.
    masks = [model({"image": image, "question": questions[:, q]})["mask"].numpy()
             for q in range(2)]
    return per_cell, np.maximum(*masks) > 0


@pytest.mark.parametrize("variant", ["han", "adahan"])
def test_soft_head_gives_cells_that_were_not_kept_a_gradient(variant):
    fields = dict(TINY, variant=variant, k=1, min_cells=1, max_cells=1)
    if variant == "han":
        fields.pop("min_cells"), fields.pop("max_cells")
    plain, kept = pixel_gradients(ModelConfig(**fields))
    assert kept.sum(1).max() <= 2 and not kept.all()  # One cell a question, two questions.
    # The paper's HAN: a cell that was not kept has no say in the loss.
    assert np.all(plain[~kept] == 0) and np.all(plain[kept] > 0)
    guided, kept_again = pixel_gradients(ModelConfig(**fields, soft_head_weight=1.0))
    np.testing.assert_array_equal(kept_again, kept)  # Same weights, same kept cells.
    assert np.all(guided > 0)  # With the soft head every cell's encoder features learn.


def test_soft_head_pools_the_image_by_presence_over_every_cell():
    keras.utils.set_random_seed(0)
    model = VQAModel(ModelConfig(**TINY, k=1, soft_head_weight=1.0))
    head = model.get_layer("answer_head")
    rng = np.random.default_rng(0)
    cells = tf.constant(rng.uniform(0, 1, (2, 4, 4, 16)), tf.float32)
    question = tf.constant(rng.integers(2, 10, (2, 4)), tf.int32)
    outputs = head({"cells": cells, "question": question})
    weights = tf.nn.softmax(outputs["presence"])
    soft_input = outputs["soft_head_input"]
    assert outputs["mask"].numpy().sum(1).tolist() == [1, 1]  # HAN keeps one cell of 16.
    # What the soft head reads: the cells (not fused) averaged by softmax(presence) over
    # all 16 cells, kept or not, and the question vector (the GRU's 32 units).
    expected = np.einsum("bn,bnc->bc", weights.numpy(), cells.numpy().reshape(2, 16, 16))
    np.testing.assert_allclose(soft_input[:, :16], expected, rtol=1e-5, atol=1e-6)
    assert soft_input.shape == (2, 16 + 32)


def test_the_saved_model_has_no_soft_head(tmp_path):
    with_head = ModelConfig(**TINY, k=2, soft_head_weight=0.5)
    model = VQAModel(with_head)
    assert model.count_params() == VQAModel(with_head.replace(soft_head_weight=0.0)).count_params()
    train_model = build_training_model(model, questions_per_image=2)
    assert train_model.count_params() > model.count_params()
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert set(loaded.output) == {"answer", "presence", "mask"}
    assert loaded.config.soft_head_weight == 0.5


@pytest.mark.parametrize("fields, message", [
    (dict(variant="none"), "needs variant 'han' or 'adahan'"),
    (dict(soft_head_weight=-1.0), "must be a number in"),
    (dict(soft_head_weight=float("nan")), "must be a number in"),
    (dict(soft_head_weight="1"), "must be a number in"),
])
def test_soft_head_weight_is_validated(fields, message):
    fields = dict(dict(soft_head_weight=1.0), **fields)
    with pytest.raises(ValueError, match=message):
        ModelConfig(**TINY, **fields)


def test_trainer_trains_with_the_soft_head(tmp_path):
    run_dir = tmp_path / "run"
    metrics = train.main([
        "--dataset", "sort_of_clevr_tiny", "--preset", "sort_of_clevr", "--variant", "han",
        "--set", "soft_head_weight=1", "--epochs", "1",
        "--data_dir", str(tmp_path / "tfds"), "--output_dir", str(run_dir)])
    assert metrics["num_questions"] == 4 * 20
    with open(run_dir / "history.csv") as f:
        epoch = next(csv.DictReader(f))
    assert np.isfinite(float(epoch["loss"])) and np.isfinite(float(epoch["val_loss"]))
    loaded = keras.models.load_model(run_dir / "model.keras")
    # The soft head's weights stayed in the training model.
    assert loaded.count_params() == VQAModel(
        loaded.config.replace(soft_head_weight=0.0)).count_params()
    # Exported, it answers from the kept cells as any HAN model does.
    from ai_edge_litert.interpreter import Interpreter

    from keras_adahan.export import exporter

    exporter.export(str(run_dir), str(tmp_path / "export"), quantizations=("float32",),
                    data_dir=str(tmp_path / "tfds"), log=lambda *args: None)
    runner = Interpreter(model_path=str(tmp_path / "export" / "vqa_float32.tflite")
                         ).get_signature_runner("vqa")
    assert set(runner.get_output_details()) == {"probabilities", "mask", "presence"}
    size, length = loaded.config.image_size, loaded.config.max_question_length
    image = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype("float32")
    question = np.zeros((1, length), "int32")
    question[0, -4:] = [2, 3, 4, 5]
    answered = runner(image=image, question=question)
    expected = loaded({"image": image, "question": question})
    assert answered["mask"].sum() == 7  # The preset's k.
    np.testing.assert_array_equal(answered["mask"], np.asarray(expected["mask"]))
    np.testing.assert_allclose(answered["probabilities"],
                               keras.ops.softmax(expected["answer"]), atol=1e-4)


def test_multiworker_loop_counts_the_soft_head_as_keras_does():
    from keras_adahan import multiworker

    keras.utils.set_random_seed(0)
    model = VQAModel(ModelConfig(**TINY, k=2, soft_head_weight=0.5))
    train_model = build_training_model(model, questions_per_image=2)
    train_model.compile(optimizer=keras.optimizers.Adam(1e-3),
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    batches = tf.data.Dataset.from_tensor_slices((
        {"image": rng.uniform(0, 255, (8, 8, 8, 3)).astype("float32"),
         "questions": rng.integers(2, 10, (8, 2, 4)).astype("int32")},
        rng.integers(0, 3, (8, 2)).astype("int32"))).batch(4)
    history = multiworker.fit(train_model, batches, batches, epochs=1, initial_epoch=0,
                              steps_per_epoch=2, callbacks=[], strategy=tf.distribute.get_strategy(),
                              verbose=0)
    # After the epoch, on the same weights: the answer's loss plus half the soft head's.
    keras_loss = train_model.evaluate(batches, verbose=0, return_dict=True)["loss"]
    answer_only = keras.Model(train_model.input, train_model.output[0])
    answer_only.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    np.testing.assert_allclose(history.history["val_loss"][0], keras_loss, rtol=1e-5)
    assert keras_loss > answer_only.evaluate(batches, verbose=0, return_dict=True)["loss"]
