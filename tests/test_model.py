"""Tests of keras_adahan.model and keras_adahan.presets, on tiny configs (32x32 images, 4x4 grid)."""

import dataclasses
import json
import os
import tempfile
import unittest

import keras
import numpy as np
import tensorflow as tf

from keras_adahan.config import AGGREGATIONS
from keras_adahan.config import VARIANTS
from keras_adahan.config import ModelConfig
from keras_adahan.config import config_differences
from keras_adahan.geometry import cell_boxes
from keras_adahan.geometry import cell_edges
from keras_adahan.geometry import grid_size
from keras_adahan.model import VQAModel
from keras_adahan.model import build_model
from keras_adahan.model import build_training_model
from keras_adahan import layers as adahan_layers
from keras_adahan.presets import PRESETS
from keras_adahan.presets import get_preset

TINY = ModelConfig(
    image_size=32,
    conv_filters=(4, 8, 8),
    conv_kernel_sizes=(3, 3, 3),
    conv_strides=(2, 4, 1),  # 32 -> 16 -> 4: a 4x4 grid, 16 cells.
    context_convs=1,  # Gated fusion (the default): convs 1-2 local, conv 3 context.
    vocab_size=10,
    max_question_length=5,
    embedding_dim=4,
    rnn_units=4,
    num_answers=3,
    fusion_units=(8, 8),
    k=0.25,  # 4 of 16 cells.
    relational_units=(8, 8),
    classifier_units=(8,),
)
# The layer that aggregates the cells, by `ModelConfig.aggregation`; soft attention's weights
# come from one of SOFT_ATTENTION.
AGGREGATORS = {
    "flatten": adahan_layers.FlattenHead,
    "sum": (adahan_layers.MaskedSumPooling, adahan_layers.SoftAttentionPooling),
    "relational": adahan_layers.RelationalAggregation,
}
SOFT_ATTENTION = (adahan_layers.SoftAttentionWeights, adahan_layers.SoftAttentionPooling)


def inputs(config, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.uniform(0, 255, (batch, config.image_size, config.image_size, 3))
    question = rng.integers(0, config.vocab_size, (batch, config.max_question_length))
    question[:, :2] = 0  # Left padding.
    return {"image": image.astype("float32"), "question": question.astype("int32")}


def numpy_outputs(outputs):
    return {key: keras.ops.convert_to_numpy(value) for key, value in outputs.items()}


class ConfigTest(unittest.TestCase):
    def test_grid(self):
        self.assertEqual(TINY.grid_size, 4)
        self.assertEqual(TINY.num_cells, 16)
        self.assertEqual(grid_size(ModelConfig()), 16)
        self.assertEqual(grid_size(PRESETS["reference"]), 32)

    def test_cell_boxes(self):
        np.testing.assert_allclose(
            cell_boxes(2),
            [[0, 0, 0.5, 0.5], [0, 0.5, 0.5, 1], [0.5, 0, 1, 0.5], [0.5, 0.5, 1, 1]],
        )
        boxes = cell_boxes(16, image_size=128)
        self.assertEqual(boxes.shape, (256, 4))
        np.testing.assert_allclose(boxes[17], [8, 8, 16, 16])  # Cell (1, 1).
        np.testing.assert_allclose(boxes[255], [120, 120, 128, 128])
        # The same row-major order as the model's (B, G, G, D) -> (B, N, D) reshape.
        grid = np.zeros((1, 3, 3, 2), "float32")
        grid[0, 1, 2] = 1.0  # Row 1, column 2.
        flat = keras.ops.convert_to_numpy(keras.layers.Reshape((9, 2))(grid))
        cell = int(np.argmax(flat[0, :, 0]))
        np.testing.assert_allclose(cell_boxes(3)[cell], [1 / 3, 2 / 3, 2 / 3, 1.0], rtol=1e-6)
        with self.assertRaisesRegex(ValueError, "`grid_size` must be a positive int, received 0"):
            cell_boxes(0)

    def test_cell_edges_lie_halfway_between_the_windows_centres(self):
        # Keras' 'same' pads the odd pixel after: 4x4/2, 4x4/2, 2x2/2 and two 3x3/1 convs
        # map cell j to pixels centred at 8 j + 4, the even split (pixel i spans [i, i+1)).
        np.testing.assert_array_equal(cell_edges(ModelConfig()), np.arange(17) / 16)
        # 3x3/2 four times on 75 px: 2 j, 2 j + 1, 2 j, 2 j + 1 -> 16 j + 10.5.
        centres = 16 * np.arange(5) + 10.5
        np.testing.assert_allclose(cell_edges(PRESETS["sort_of_clevr"]) * 75,
                                   [0, *(centres[:-1] + centres[1:]) / 2, 75])
        # PyTorch's centred padding (fused or counted): each conv-pool maps j to 2 j.
        for name in ("reference", "reference_exact"):
            np.testing.assert_allclose(cell_edges(PRESETS[name]) * 256,
                                       [0, *(8 * np.arange(31) + 4.5), 256])
        # TINY: 3x3/2 on 32 px pads nothing before (2 j + 1), 3x3/4 on 16 neither (4 j + 1).
        np.testing.assert_allclose(cell_edges(TINY) * 32, [0, 7.5, 15.5, 23.5, 32])
        # Two 4x4 convs at stride 1 shift every cell half a stride (4 px) each: the last
        # cell, centred at 132 px, is taken at the last pixel, 127.5.
        shifted = ModelConfig(conv_kernel_sizes=(4, 4, 2, 4, 4), fusion="concat")
        np.testing.assert_allclose(cell_edges(shifted)[-4:] * 128, [112, 120, 125.75, 128])
        with self.assertRaisesRegex(ValueError, "the image encoder centres several cells past "
                                    "the image's last pixel.*conv_kernel_sizes=\\(2, 4, 4"):
            ModelConfig(image_size=32, conv_filters=(8,) * 8, conv_kernel_sizes=(2,) + (4,) * 7,
                        conv_strides=(4,) + (1,) * 7, fusion="concat", k=2)

    def test_cell_edges_match_where_the_encoders_look(self):
        """With every conv kernel a positive box filter, an inner cell's gradient is
        symmetric about its window's centre: the centre of its box."""
        # 'Same' average pooling after a 3x3 and an even (4x4) conv at stride 1.
        pooled = ModelConfig(image_size=48, conv_filters=(8, 8, 8), conv_kernel_sizes=(3, 4, 3),
                             conv_strides=(1, 1, 1), pool_sizes=(2, 3, 0),
                             pool_strides=(2, 2, 1), context_convs=1, k=2)
        configs = {name: PRESETS[name] for name in
                   ("default", "sort_of_clevr", "reference", "reference_exact")}
        for name, config in {**configs, "pooled": pooled}.items():
            encoder = VQAModel(config).get_layer("image_encoder")
            for layer in encoder.layers:
                for weight in layer.weights:
                    if weight.path.endswith("kernel"):
                        weight.assign(np.ones(weight.shape) / np.prod(weight.shape[:3]))
            grid, size = config.grid_size, config.image_size
            pixels = tf.Variable(tf.ones((1, size, size, 3)))
            middle = grid // 2
            with tf.GradientTape() as tape:
                total = tf.reduce_sum(encoder(pixels)[:, middle, middle])
            weight = tf.reduce_sum(tf.abs(tape.gradient(total, pixels)), axis=(0, 3)).numpy()
            position = np.arange(size) + 0.5
            looks = [(position * weight.sum(axis)).sum() / weight.sum() for axis in (1, 0)]
            edges = cell_edges(config) * size
            np.testing.assert_allclose(looks, [(edges[middle] + edges[middle + 1]) / 2] * 2,
                                       atol=1e-3, err_msg=name)

    def test_config_differences_tell_one_cell_from_all_cells(self):
        config = ModelConfig(k=1)  # One cell; k = 1.0 would keep all of them.
        saved = json.loads(json.dumps(config.to_dict()))  # As config.json holds it.
        self.assertEqual(config_differences(saved, config), [])
        self.assertEqual(config_differences({**saved, "k": 1.0}, config), ["k 1.0 (now 1)"])
        self.assertEqual(config_differences({**saved, "conv_filters": [8]}, config, "model"),
                         ["conv_filters [8] (model [16, 32, 64, 64, 64])"])

    def test_replace_and_dict_round_trip(self):
        config = TINY.replace(variant="adahan", max_cells=6)
        self.assertEqual((config.variant, config.max_cells, config.k), ("adahan", 6, 0.25))
        self.assertEqual(dataclasses.replace(TINY, k=2).k, 2)
        restored = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
        self.assertEqual(restored, config)
        self.assertEqual(ModelConfig.from_dict(dataclasses.asdict(config)), config)
        with self.assertRaisesRegex(ValueError, r"Unknown ModelConfig field\(s\) \['colour'\]"):
            TINY.replace(colour="red")
        with self.assertRaises(dataclasses.FrozenInstanceError):
            TINY.k = 3

    def test_validation_errors(self):
        cases = [
            (dict(variant="hard"), r"`variant` must be one of \('han', 'adahan', 'soft', 'none'\), received 'hard'"),
            (dict(aggregation="mean"), r"`aggregation` must be one of .* received 'mean'"),
            (dict(fusion="mul"), r"`fusion` must be one of \('concat', 'add'.*\), received 'mul'"),
            (dict(rnn="rnn"), r"`rnn` must be one of \('gru', 'lstm'\), received 'rnn'"),
            (dict(pooling="min"), r"`pooling` must be one of .* received 'min'"),
            (dict(k=0), r"`k` must be a count in \[1, num_cells\] or a share of the cells in \(0, 1\], received 0"),
            (dict(k=17), r"`k` must be in \[1, num_cells\] = \[1, 16\], received 17"),
            (dict(k=1.5), r"`k` given as a share of the cells must be in \(0, 1\], received 1.5"),
            (dict(threshold=0.0), r"`threshold` must be in \(0, 1\], received 0.0"),
            (dict(threshold=2.0), r"`threshold` must be in \(0, 1\], received 2.0"),
            (dict(max_cells=17), r"`max_cells` must be in \[1, num_cells\] = \[1, 16\], received 17"),
            (dict(min_cells=-1), "`min_cells` must be >= 0, received -1"),
            (dict(image_size=0), "`image_size` must be an int >= 1, received 0"),
            (dict(conv_strides=(2,)), r"`conv_strides` must have one entry per conv layer \(3"),
            # Past int32: TensorFlow's error came from Conv2D.call, after the data was built.
            (dict(conv_strides=(2, 2**31, 1)), r"`conv_strides` must be at most 2,048 \(the "
                                               r"largest image_size\), received \(2, 2147483648, 1\)"),
            (dict(pool_sizes=(3, 3, 3)), "`pool_sizes` and `pool_strides` must be both empty or both set"),
            (dict(context_convs=3), r"`fusion='gated'` needs `context_convs` in .* = \[1, 2\], received 3"),
            (dict(conv_strides=(2, 2, 2)), "context convs .* at stride 1 without pooling"),
            (dict(conv_kernel_sizes=(3, 3, 4)), r"odd kernel sizes for its context convs.*=\(3, 3, 4\)"),
            (dict(fusion_units=()), r"`fusion_units` must not be empty, received \(\)"),
            (dict(fusion="add"), "`rnn_units` must equal the last of `conv_filters` \\(8\\), received 4"),
            (dict(vocab_size=1), "`vocab_size` must be >= 2"),
            (dict(conv_batch_norm=1), "`conv_batch_norm` must be a bool, received 1"),
            (dict(relational_question=True),
             "`relational_question` .* needs aggregation 'relational', received 'sum'"),
            (dict(relational_image_cells=True),
             "`relational_image_cells` .* needs aggregation 'relational', received 'sum'"),
            (dict(aggregation="relational", relational_image_cells="yes"),
             "`relational_image_cells` must be a bool, received 'yes'"),
        ]
        for changes, message in cases:
            with self.subTest(changes=changes):
                with self.assertRaisesRegex(ValueError, message):
                    TINY.replace(**changes)


class PresetTest(unittest.TestCase):
    def test_reference_preset(self):
        config = get_preset("reference", vocab_size=20, num_answers=4)
        self.assertEqual(config.grid_size, 32)
        self.assertEqual(
            (config.fusion, config.fusion_units, config.k, config.squared_presence,
             config.aggregation, config.classifier_units, config.rnn, config.rnn_units),
            ("add", (2,), 2, True, "flatten", (), "gru", 8),
        )
        model = build_model(config)
        layer_types = {type(layer) for layer in model.get_layer("image_encoder").layers}
        self.assertNotIn(keras.layers.BatchNormalization, layer_types)
        # Conv -> average pool, fused into one strided conv per layer.
        self.assertIn(adahan_layers.ConvAveragePool2D, layer_types)
        unfused = build_model(config.replace(fuse_conv_pool=False))
        self.assertEqual(unfused.count_params(), model.count_params())
        # The PyTorch reference's parameters: 3 convs 5x5 (608 + 1608 + 1608), embedding
        # 20 x 8, GRU(8, 8) 432, 1x1 conv 8 -> 2 (18), Linear(1024 -> 4) 4100.
        self.assertEqual(model.count_params(), 3824 + 160 + 432 + 18 + 4100)
        outputs = numpy_outputs(model(inputs(config, batch=1)))
        self.assertEqual(outputs["answer"].shape, (1, 4))
        self.assertEqual(outputs["mask"].shape, (1, 1024))
        self.assertEqual(outputs["mask"].sum(), 2.0)

    def test_default_preset(self):
        config = get_preset("default")
        self.assertEqual(config, ModelConfig())
        self.assertEqual((config.image_size, config.grid_size), (128, 16))
        self.assertEqual(config.replace(max_question_length=12, vocab_size=20).num_cells, 256)
        self.assertEqual(get_preset("default", variant="adahan").variant, "adahan")

    def test_adahan_floor_defaults_to_hans_k(self):
        self.assertEqual(get_preset("default").adahan_min_cells, 26)  # 10% of 256 cells.
        self.assertEqual(TINY.replace(k=3).adahan_min_cells, 3)
        self.assertEqual(TINY.replace(k=3, min_cells=5).adahan_min_cells, 5)
        mask = build_model(TINY.replace(variant="adahan", k=3)).get_layer(
            "answer_head").get_layer("mask")
        self.assertEqual(mask.min_cells, 3)

    def test_unknown_preset(self):
        with self.assertRaisesRegex(
            ValueError, r"`name` must be one of the presets \['clevr', 'default', 'reference', "
            r"'reference_exact'.*\], received 'big'"
        ):
            get_preset("big")


class ModelTest(unittest.TestCase):
    def test_inputs_outputs_and_submodels(self):
        model = build_model(TINY)
        self.assertEqual(set(model.input), {"image", "question"})
        self.assertEqual(model.input["question"].dtype, "int32")
        self.assertEqual(tuple(model.input["image"].shape), (None, 32, 32, 3))
        data = {key: tf.constant(value) for key, value in inputs(TINY, batch=3).items()}
        outputs = numpy_outputs(model(data))
        self.assertEqual(set(outputs), {"answer", "presence", "mask"})
        self.assertEqual(outputs["answer"].shape, (3, 3))
        self.assertEqual(outputs["presence"].shape, (3, 16))
        np.testing.assert_array_equal(outputs["mask"].sum(1), [4, 4, 4])
        # Encode the image once, ask several questions with the head alone.
        cells = model.get_layer("image_encoder")(data["image"])
        self.assertEqual(tuple(cells.shape), (3, 4, 4, 16))  # Gated: 8 local + 8 context.
        head = model.get_layer("answer_head")
        for seed in (1, 2):
            question = tf.constant(inputs(TINY, batch=3, seed=seed)["question"])
            expected = numpy_outputs(model({"image": data["image"], "question": question}))
            got = numpy_outputs(head({"cells": cells, "question": question}))
            for key in expected:
                np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-6)

    def test_all_variants_and_aggregations(self):
        data = inputs(TINY, batch=2)
        for variant in VARIANTS:
            for aggregation in AGGREGATIONS:
                config = TINY.replace(variant=variant, aggregation=aggregation, max_cells=8)
                with self.subTest(variant=variant, aggregation=aggregation):
                    model = build_model(config)
                    # Each aggregation is its own layer, whatever the attention.
                    head_layers = model.get_layer("answer_head").layers
                    self.assertTrue(any(isinstance(layer, AGGREGATORS[aggregation])
                                        for layer in head_layers))
                    if variant == "soft":
                        self.assertTrue(any(isinstance(layer, SOFT_ATTENTION)
                                            for layer in head_layers))
                    outputs = numpy_outputs(model(data))
                    self.assertEqual(outputs["answer"].shape, (2, 3))
                    self.assertTrue(np.all(np.isfinite(outputs["answer"])))
                    kept = outputs["mask"].sum(1)
                    self.assertTrue(np.all(np.isin(outputs["mask"], [0.0, 1.0])))
                    if variant == "han":
                        np.testing.assert_array_equal(kept, [4, 4])
                    elif variant == "adahan":
                        # At least its floor, HAN's 4 cells.
                        self.assertTrue(np.all((kept >= 4) & (kept <= 8)), kept)
                    else:
                        np.testing.assert_array_equal(kept, [16, 16])
        # The reference's variations: LSTM, add fusion, pooling, squared presence.
        config = TINY.replace(
            rnn="lstm", fusion="add", rnn_units=8, pool_sizes=(3, 0, 0),
            pool_strides=(2, 1, 1), conv_strides=(1, 4, 1), squared_presence=True, aggregation="flatten", classifier_units=(),
        )
        self.assertEqual(config.grid_size, 4)
        outputs = numpy_outputs(build_model(config)(data))
        self.assertEqual(outputs["answer"].shape, (2, 3))

    def test_gradients_only_through_kept_cells(self):
        data = inputs(TINY, batch=2)
        cases = [("han", "sum"), ("han", "relational"), ("han", "flatten"), ("adahan", "sum")]
        for variant, aggregation in cases:
            with self.subTest(variant=variant, aggregation=aggregation):
                model = build_model(TINY.replace(variant=variant, aggregation=aggregation))
                head = model.get_layer("answer_head")
                fused_cells = head.get_layer("fused_cells")
                # The head from the fused embedding (B, N, D) on, to differentiate w.r.t. it.
                from_fused = keras.Model(
                    fused_cells.output, [head.output["answer"], head.output["mask"]]
                )
                to_fused = keras.Model(head.input, fused_cells.output)
                cells = model.get_layer("image_encoder")(data["image"])
                question = tf.constant(data["question"])
                fused = tf.convert_to_tensor(to_fused({"cells": cells, "question": question}))
                weights = tf.constant(np.random.default_rng(0).normal(size=(2, 3)), tf.float32)
                with tf.GradientTape() as tape:
                    tape.watch(fused)
                    answer, mask = from_fused(fused)
                    loss = tf.reduce_sum(answer * weights)
                grad = np.abs(tape.gradient(loss, fused).numpy()).sum(-1)  # (B, N)
                mask = mask.numpy()
                self.assertGreater((mask == 0).sum(), 0)
                np.testing.assert_array_equal(grad[mask == 0], 0.0)
                self.assertTrue(np.all(grad[mask == 1] > 0))

    def test_relational_image_cells_reach_g_from_kept_cells_only(self):
        """g reads each kept cell's image features beside its fused ones and coordinates; the
        answer's gradient reaches the image's cells at the kept cells and no others."""
        data = inputs(TINY, batch=2)
        config = TINY.replace(fusion="multiply", aggregation="relational",
                              relational_image_cells=True, cell_coordinates=True)
        model = build_model(config)
        head = model.get_layer("answer_head")
        pair_left = head.get_layer("aggregate").pair_left
        # Rows: fused (8), image cells (8), coordinates (2).
        self.assertEqual(pair_left.kernel.shape[0], 8 + 8 + 2)
        cells = tf.convert_to_tensor(model.get_layer("image_encoder")(data["image"]))
        question = tf.constant(data["question"])
        weights = tf.constant(np.random.default_rng(0).normal(size=(2, 3)), tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(cells)
            outputs = head({"cells": cells, "question": question})
            loss = tf.reduce_sum(outputs["answer"] * weights)
        grad = np.abs(tape.gradient(loss, cells).numpy()).reshape(2, 16, -1)  # (B, N, C)
        mask = outputs["mask"].numpy()
        np.testing.assert_array_equal(grad[mask == 0], 0.0)
        self.assertTrue(np.all(grad[mask == 1].sum(-1) > 0))

    def test_save_load_round_trip(self):
        data = inputs(TINY, batch=2)
        configs = [
            TINY,
            TINY.replace(variant="adahan", aggregation="relational", max_cells=6),
            TINY.replace(variant="soft", aggregation="flatten"),
        ]
        with tempfile.TemporaryDirectory() as folder:
            for index, config in enumerate(configs):
                with self.subTest(variant=config.variant, aggregation=config.aggregation):
                    model = build_model(config)
                    expected = numpy_outputs(model(data))
                    path = os.path.join(folder, f"model_{index}.keras")
                    model.save(path)
                    restored = keras.models.load_model(path, safe_mode=True)
                    got = numpy_outputs(restored(data))
                    self.assertEqual(set(got), set(expected))
                    for key in expected:
                        np.testing.assert_allclose(got[key], expected[key], rtol=1e-6, atol=1e-6)
                    # The file carries the config: the same graph comes back, with it.
                    self.assertIsInstance(restored, VQAModel)
                    self.assertEqual(restored.config, config)
                    np.testing.assert_array_equal(
                        restored.cell_boxes(), cell_boxes(config.grid_size, edges=cell_edges(config)))
                    restored.get_layer("image_encoder")
                    restored.get_layer("answer_head")
                    layers = restored.get_layer("answer_head").layers
                    self.assertFalse(any(isinstance(layer, keras.layers.Lambda) for layer in layers))
                    # Training can resume from the restored model.
                    questions = np.stack([data["question"]] * 2, axis=1)  # (B, 2, L)
                    logits = build_training_model(restored, 2)(
                        {"image": data["image"], "questions": questions}
                    )
                    np.testing.assert_allclose(
                        keras.ops.convert_to_numpy(logits)[:, 1], expected["answer"], rtol=1e-5, atol=1e-6
                    )

    def test_training_model_matches_single_question_model(self):
        model = build_model(TINY.replace(variant="adahan"))
        training_model = build_training_model(model, questions_per_image=3)
        rng = np.random.default_rng(0)
        image = inputs(TINY, batch=4)["image"]
        questions = rng.integers(0, TINY.vocab_size, (4, 3, TINY.max_question_length)).astype("int32")
        logits = keras.ops.convert_to_numpy(training_model({"image": image, "questions": questions}))
        self.assertEqual(logits.shape, (4, 3, 3))
        for q in range(3):
            single = model({"image": image, "question": questions[:, q]})["answer"]
            np.testing.assert_allclose(logits[:, q], keras.ops.convert_to_numpy(single), rtol=1e-5, atol=1e-6)

        # One fit step as the trainer compiles it; the weights are shared with `model`.
        training_model.compile(
            optimizer=keras.optimizers.Adam(1e-2),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
        before = keras.ops.convert_to_numpy(model({"image": image, "question": questions[:, 0]})["answer"])
        labels = rng.integers(0, 3, (4, 3))
        history = training_model.fit(
            {"image": image, "questions": questions}, labels, epochs=1, verbose=0
        )
        self.assertTrue(np.isfinite(history.history["loss"][0]))
        after = keras.ops.convert_to_numpy(model({"image": image, "question": questions[:, 0]})["answer"])
        self.assertFalse(np.allclose(before, after))
        with self.assertRaisesRegex(ValueError, "`questions_per_image` must be a positive int, received 0"):
            build_training_model(model, 0)


if __name__ == "__main__":
    unittest.main()


def test_old_run_folder_without_a_config_in_the_model_file_loads(tmp_path):
    """A run saved before models carried their config (a plain functional model) loads as a
    `VQAModel` rebuilt from config.json, answering as the file does."""
    import json

    from keras_adahan import run_files
    from keras_adahan.text import Vocabulary

    model = build_model(TINY)
    old = keras.Model(model.input, model.output, name=model.name)  # What older runs saved.
    old.save(tmp_path / "model.keras")
    Vocabulary([f"w{i}" for i in range(TINY.vocab_size - 2)]).save(tmp_path / "vocabulary.json")
    answers = [f"a{i}" for i in range(TINY.num_answers)]
    for name, content in (("answers.json", {"answers": answers}),
                          ("config.json", {"model": TINY.to_dict(),
                                           "train": {"dataset": "tiny"}})):
        (tmp_path / name).write_text(json.dumps(content))
    run = run_files.load_run(str(tmp_path))
    assert isinstance(run.model, VQAModel) and run.model.config == TINY
    data = inputs(TINY, batch=2)
    for key, value in numpy_outputs(model(data)).items():
        np.testing.assert_array_equal(numpy_outputs(run.model(data))[key], value)


def test_training_model_gradients_are_the_per_question_models():
    """The training model (image and cells' share once per image, `SplitAnswerHead`) gives
    every weight the gradient that the model asked each question on its own gives, for every
    fusion and the relational aggregator (random weights and biases)."""
    rng = np.random.default_rng(1)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")
    for fusion, changes in (("gated", {}), ("concat", {"aggregation": "relational"}),
                            ("add", {"rnn_units": 8}), ("multiply", {"variant": "adahan"}),
                            ("multiply", {"aggregation": "relational",
                                          "relational_question": True}),
                            ("multiply", {"aggregation": "relational",
                                          "relational_question": True,
                                          "relational_image_cells": True})):
        config = TINY.replace(fusion=fusion, **changes)
        model = build_model(config)
        for weight in model.trainable_weights:
            weight.assign(rng.normal(0, 0.5, weight.shape))
        training_model = build_training_model(model, questions_per_image=3)
        image = inputs(config, batch=2)["image"]
        questions = rng.integers(1, config.vocab_size, (2, 3, config.max_question_length))
        questions = questions.astype("int32")
        labels = rng.integers(0, config.num_answers, (2, 3))
        variables = model.trainable_variables
        with tf.GradientTape() as tape:
            expected_loss = sum(
                loss(labels[:, q], model({"image": image, "question": questions[:, q]},
                                         training=True)["answer"])
                for q in range(3))
        expected = tape.gradient(expected_loss, variables)
        with tf.GradientTape() as tape:
            actual_loss = loss(labels, training_model({"image": image, "questions": questions},
                                                      training=True))
        actual = tape.gradient(actual_loss, variables)
        np.testing.assert_allclose(float(actual_loss), float(expected_loss), rtol=1e-5)
        for variable, e, a in zip(variables, expected, actual):
            assert a is not None, f"{fusion}: no gradient for {variable.path}"
            np.testing.assert_allclose(tf.convert_to_tensor(a), tf.convert_to_tensor(e),
                                       rtol=1e-3, atol=1e-5,
                                       err_msg=f"{fusion} {variable.path}")


def test_models_saved_with_keras_batch_norm_load():
    """Runs saved before the encoder used `layers.BatchNormalization` (Keras' own layer then)
    load: weights files name layers by class name, and the two share it."""
    from keras_adahan import model as model_module

    model = build_model(TINY)
    batch = inputs(TINY)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "keras_batch_norm.weights.h5")
        original = model_module.adahan_layers.BatchNormalization
        model_module.adahan_layers.BatchNormalization = keras.layers.BatchNormalization
        try:
            saved = build_model(TINY)
        finally:
            model_module.adahan_layers.BatchNormalization = original
        assert type(saved.get_layer("image_encoder").get_layer("batch_norm_1")) is (
            keras.layers.BatchNormalization)
        for weight in saved.weights:
            weight.assign(np.random.default_rng(2).uniform(0.5, 1.5, weight.shape))
        saved.save_weights(path)
        model.load_weights(path)
    for key, value in numpy_outputs(saved(batch)).items():
        np.testing.assert_allclose(numpy_outputs(model(batch))[key], value, rtol=1e-6, atol=1e-6)


def test_split_answer_head_answers_as_the_answer_head():
    """encode_cells once per image + the split head per question = the answer head, for
    every fusion (random weights and biases, so each share and bias is exercised)."""
    from keras_adahan.model import SplitAnswerHead

    rng = np.random.default_rng(0)
    for fusion, changes, encoded_channels in (
        ("gated", {}, 16),  # Two parts: fusion_1 (8) and gate_1 (8).
        ("concat", {}, 8),
        ("add", {"rnn_units": 8}, 8),  # The question vector is added to the 8 cell channels.
        ("multiply", {}, 8),
        # The relational module reads the 8 image channels too: they travel with the share.
        ("multiply", {"aggregation": "relational", "relational_image_cells": True}, 16),
    ):
        config = TINY.replace(fusion=fusion, **changes)
        model = build_model(config)
        for weight in model.weights:
            values = rng.normal(0, 0.5, weight.shape)
            weight.assign(np.abs(values) + 0.5 if "variance" in weight.path else values)
        split_head = SplitAnswerHead(model)
        assert split_head.encoded_shape == (4, 4, encoded_channels), fusion
        batch = inputs(config, batch=3)
        expected = model(batch)
        cells = model.get_layer("image_encoder")(batch["image"])
        outputs = split_head(split_head.encode_cells(cells), batch["question"])
        for key in ("answer", "presence"):
            np.testing.assert_allclose(keras.ops.convert_to_numpy(outputs[key]),
                                       keras.ops.convert_to_numpy(expected[key]),
                                       rtol=1e-4, atol=1e-4, err_msg=f"{fusion} {key}")
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(outputs["mask"]),
                                      keras.ops.convert_to_numpy(expected["mask"]))
