"""Tests of keras_adahan.layers: hand-computed cases, generic layer behaviour, errors."""

import unittest

import keras
import numpy as np
import tensorflow as tf

from keras_adahan import layers

RNG = np.random.default_rng(0)


def uniform(*shape):
    return RNG.uniform(-1.0, 1.0, size=shape).astype("float32")


def as_numpy(x):
    return keras.ops.convert_to_numpy(x)


class LayerTestCase(unittest.TestCase):
    def run_layer_test(self, cls, init_kwargs, inputs, expected_output_shape, restore_batch=None):
        """Config round trip, symbolic call, eager call and one `fit` step in a tiny model.

        `restore_batch`: a layer undoing a change of the batch size, so `fit` sees as many
        labels as inputs.
        """
        layer = cls(**init_kwargs)
        # Config round trip: a layer rebuilt from its config has the same config.
        config = layer.get_config()
        for key in init_kwargs:
            self.assertIn(key, config)
        restored = cls.from_config(config)
        self.assertEqual(restored.get_config(), config)

        # Symbolic call.
        symbolic = [keras.Input(x.shape[1:], dtype=x.dtype) for x in inputs]
        output = layer(*symbolic)
        self.assertEqual(tuple(output.shape), (None,) + tuple(expected_output_shape[1:]))

        # Eager call.
        eager = cls(**init_kwargs)(*inputs)
        self.assertEqual(tuple(eager.shape), tuple(expected_output_shape))

        # One fit step: the layer inside a tiny model, then a trainable Dense.
        model_inputs = [keras.Input(x.shape[1:], dtype=x.dtype) for x in inputs]
        y = cls(**init_kwargs)(*model_inputs)
        y = keras.layers.Dense(2)(y)
        if restore_batch is not None:
            y = restore_batch(y)
        y = keras.layers.Dense(1)(keras.layers.Flatten()(y))
        model = keras.Model(model_inputs, y)
        model.compile(optimizer="sgd", loss="mse")
        batch = inputs[0].shape[0]
        history = model.fit(list(inputs), np.zeros((batch, 1)), epochs=1, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))
        return layer


class L2PresenceTest(LayerTestCase):
    def test_hand_computed(self):
        fused = np.array([[[3.0, 4.0], [1.0, 0.0]], [[0.0, 0.0], [2.0, 2.0]]], "float32")
        np.testing.assert_allclose(
            as_numpy(layers.L2Presence()(fused)), [[5.0, 1.0], [1e-6, np.sqrt(8.0)]], rtol=1e-6
        )
        np.testing.assert_allclose(
            as_numpy(layers.L2Presence(squared=True)(fused)), [[25.0, 1.0], [0.0, 8.0]]
        )

    def test_gradient_finite_at_zero_cell(self):
        fused = tf.zeros((1, 2, 3))
        with tf.GradientTape() as tape:
            tape.watch(fused)
            presence = layers.L2Presence()(fused)
        self.assertTrue(np.all(np.isfinite(tape.gradient(presence, fused).numpy())))

    def test_layer_behaviours(self):
        self.run_layer_test(layers.L2Presence, {"squared": True}, [uniform(2, 4, 3)], (2, 4))

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "`epsilon` must be >= 0, received -1"):
            layers.L2Presence(epsilon=-1)


class HANMaskTest(LayerTestCase):
    def test_hand_computed_with_ties(self):
        presence = np.array([[0.1, 0.9, 0.5, 0.9], [0.3, 0.3, 0.3, 0.3]], "float32")
        # Ties: the lower cell index wins.
        np.testing.assert_array_equal(
            as_numpy(layers.HANMask(k=2)(presence)), [[0, 1, 0, 1], [1, 1, 0, 0]]
        )
        np.testing.assert_array_equal(
            as_numpy(layers.HANMask(k=3)(presence)), [[0, 1, 1, 1], [1, 1, 1, 0]]
        )

    def test_k_equal_to_num_cells(self):
        presence = np.array([[0.1, 0.9, 0.5, 0.9]], "float32")
        np.testing.assert_array_equal(as_numpy(layers.HANMask(k=4)(presence)), [[1, 1, 1, 1]])
        np.testing.assert_array_equal(as_numpy(layers.HANMask(k=1.0)(presence)), [[1, 1, 1, 1]])

    def test_share(self):
        presence = np.array([[0.1, 0.9, 0.5, 0.7]], "float32")
        np.testing.assert_array_equal(as_numpy(layers.HANMask(k=0.25)(presence)), [[0, 1, 0, 0]])
        np.testing.assert_array_equal(as_numpy(layers.HANMask(k=0.5)(presence)), [[0, 1, 0, 1]])
        # A share rounding to zero still keeps one cell.
        np.testing.assert_array_equal(as_numpy(layers.HANMask(k=0.01)(presence)), [[0, 1, 0, 0]])
        self.assertEqual(layers.num_kept_cells(0.05, 256), 13)
        self.assertEqual(layers.num_kept_cells(2, 1024), 2)

    def test_layer_behaviours(self):
        self.run_layer_test(layers.HANMask, {"k": 2}, [uniform(2, 6)], (2, 6))
        self.run_layer_test(layers.HANMask, {"k": 0.5}, [uniform(2, 6)], (2, 6))

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, r"`k` must be a count in \[1, num_cells\] or a share of the cells in \(0, 1\], received 0"):
            layers.HANMask(k=0)
        with self.assertRaisesRegex(ValueError, r"`k` given as a share .* \(0, 1\], received 1.5"):
            layers.HANMask(k=1.5)
        with self.assertRaisesRegex(ValueError, r"\(0, 1\], received 0.0"):
            layers.HANMask(k=0.0)
        with self.assertRaisesRegex(ValueError, "`k` must be an int count .* received 'a'"):
            layers.HANMask(k="a")
        with self.assertRaisesRegex(ValueError, r"`k` must be in \[1, num_cells\] = \[1, 4\], received 5"):
            layers.HANMask(k=5)(np.zeros((1, 4), "float32"))


class AdaHANMaskTest(LayerTestCase):
    # softmax(log p) = p for p summing to one.
    presence = np.log(np.array([[0.5, 0.3, 0.1, 0.1], [0.4, 0.2, 0.2, 0.2]], "float32"))

    def test_default_threshold_is_one_over_num_cells(self):
        np.testing.assert_array_equal(
            as_numpy(layers.AdaHANMask()(self.presence)), [[1, 1, 0, 0], [1, 0, 0, 0]]
        )

    def test_threshold(self):
        np.testing.assert_array_equal(
            as_numpy(layers.AdaHANMask(threshold=0.15)(self.presence)), [[1, 1, 0, 0], [1, 1, 1, 1]]
        )
        np.testing.assert_array_equal(
            as_numpy(layers.AdaHANMask(threshold=0.05)(self.presence)), [[1, 1, 1, 1], [1, 1, 1, 1]]
        )

    def test_floor(self):
        # Nothing reaches 0.9: the floor keeps the top cells, the lower index on ties.
        np.testing.assert_array_equal(
            as_numpy(layers.AdaHANMask(threshold=0.9)(self.presence)), [[1, 0, 0, 0], [1, 0, 0, 0]]
        )
        np.testing.assert_array_equal(
            as_numpy(layers.AdaHANMask(threshold=0.9, min_cells=3)(self.presence)),
            [[1, 1, 1, 0], [1, 1, 1, 0]],
        )
        np.testing.assert_array_equal(
            as_numpy(layers.AdaHANMask(threshold=0.9, min_cells=0)(self.presence)),
            [[0, 0, 0, 0], [0, 0, 0, 0]],
        )

    def test_ceiling(self):
        np.testing.assert_array_equal(
            as_numpy(layers.AdaHANMask(threshold=0.05, max_cells=2)(self.presence)),
            [[1, 1, 0, 0], [1, 1, 0, 0]],
        )
        np.testing.assert_array_equal(
            as_numpy(layers.AdaHANMask(threshold=0.05, max_cells=3)(self.presence)),
            [[1, 1, 1, 0], [1, 1, 1, 0]],
        )

    def test_never_zero_cells_by_default(self):
        presence = uniform(64, 16) * 100.0
        kept = as_numpy(layers.AdaHANMask(threshold=1.0)(presence)).sum(1)
        self.assertTrue(np.all(kept >= 1))

    def test_layer_behaviours(self):
        self.run_layer_test(
            layers.AdaHANMask, {"threshold": 0.2, "min_cells": 2, "max_cells": 4},
            [uniform(2, 6)], (2, 6),
        )

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, r"`threshold` must be in \(0, 1\], received 0"):
            layers.AdaHANMask(threshold=0)
        with self.assertRaisesRegex(ValueError, r"`threshold` must be in \(0, 1\], received 1.5"):
            layers.AdaHANMask(threshold=1.5)
        with self.assertRaisesRegex(ValueError, "`min_cells` must be >= 0, received -1"):
            layers.AdaHANMask(min_cells=-1)
        with self.assertRaisesRegex(ValueError, r"`max_cells` must be >= max\(1, min_cells\) = 3, received 2"):
            layers.AdaHANMask(min_cells=3, max_cells=2)
        with self.assertRaisesRegex(ValueError, r"`max_cells` must be in \[1, num_cells\] = \[1, 4\], received 5"):
            layers.AdaHANMask(max_cells=5)(np.zeros((1, 4), "float32"))
        with self.assertRaisesRegex(ValueError, r"`min_cells` must be in \[0, num_cells\] = \[0, 4\], received 6"):
            layers.AdaHANMask(min_cells=6)(np.zeros((1, 4), "float32"))


class AggregationTest(LayerTestCase):
    def test_masked_sum_pooling(self):
        features = np.array([[[1.0, 2.0], [10.0, 20.0], [100.0, 200.0]]], "float32")
        mask = np.array([[1.0, 0.0, 1.0]], "float32")
        np.testing.assert_allclose(as_numpy(layers.MaskedSumPooling()(features, mask)), [[101, 202]])
        np.testing.assert_allclose(as_numpy(layers.MaskedSumPooling()(features)), [[111, 222]])
        self.run_layer_test(layers.MaskedSumPooling, {}, [uniform(2, 4, 3), uniform(2, 4)], (2, 3))

    def test_relational_matches_brute_force(self):
        features, presence = uniform(2, 6, 3), uniform(2, 6)
        mask = as_numpy(layers.HANMask(k=3)(presence))
        layer = layers.RelationalAggregation(hidden_units=(5, 4))
        output = as_numpy(layer(features, mask))
        (w_left, b_left), (w_right,), (w_2, b_2) = [
            [as_numpy(v) for v in sub.weights]
            for sub in (layer.pair_left, layer.pair_right, layer.pair_layers[0])
        ]
        relu = lambda x: np.maximum(x, 0.0)  # noqa: E731
        expected = np.zeros((2, 4), "float32")
        for b in range(2):
            for i in range(6):
                for j in range(6):
                    # g([x_i, x_j]) with the first layer's kernel split in two.
                    h = relu(features[b, i] @ w_left + b_left + features[b, j] @ w_right)
                    expected[b] += mask[b, i] * mask[b, j] * relu(h @ w_2 + b_2)
        np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-5)

        # Gathering the k kept cells first gives the same result at O(k^2) cost.
        gathered = layers.RelationalAggregation(hidden_units=(5, 4), max_cells=3)
        gathered(features, mask)
        gathered.set_weights(layer.get_weights())
        np.testing.assert_allclose(as_numpy(gathered(features, mask)), output, rtol=1e-5, atol=1e-5)

    def test_relational_reads_the_question_with_every_pair(self):
        features, question = uniform(2, 4, 3), uniform(2, 5)
        mask = np.array([[1, 1, 0, 1], [0, 1, 1, 0]], "float32")
        layer = layers.RelationalAggregation(hidden_units=(6,))
        output = as_numpy(layer(features, mask, question=question))
        (w_left, b_left), (w_right,), (w_question,) = [
            [as_numpy(v) for v in sub.weights]
            for sub in (layer.pair_left, layer.pair_right, layer.pair_question)
        ]
        expected = np.zeros((2, 6), "float32")
        for b in range(2):
            for i in range(4):
                for j in range(4):
                    # g([x_i, x_j, q]).
                    h = (features[b, i] @ w_left + b_left + features[b, j] @ w_right
                         + question[b] @ w_question)
                    expected[b] += mask[b, i] * mask[b, j] * np.maximum(h, 0.0)
        np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-5)
        # Without a question the layer has no weights for one.
        plain = layers.RelationalAggregation(hidden_units=(6,))
        plain(features, mask)
        assert len(plain.weights) == len(layer.weights) - 1

    def test_relational_behaviours(self):
        self.run_layer_test(
            layers.RelationalAggregation, {"hidden_units": (8, 8), "max_cells": 2},
            [uniform(2, 5, 3), np.array([[1, 0, 1, 0, 0], [0, 0, 0, 1, 1]], "float32")], (2, 8),
        )

    def test_flatten_head(self):
        features = np.array([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]], "float32")
        mask = np.array([[1.0, 0.0, 1.0]], "float32")
        head = layers.FlattenHead(units=2)
        output = as_numpy(head(features, mask))
        kernel, bias = (as_numpy(w) for w in head.dense.weights)
        # Channels summed per cell, dropped cells zeroed: [3, 0, 11].
        np.testing.assert_allclose(output, np.array([[3.0, 0.0, 11.0]]) @ kernel + bias, rtol=1e-6)
        self.run_layer_test(layers.FlattenHead, {"units": 3}, [uniform(2, 4, 2), uniform(2, 4)], (2, 3))

    def test_soft_attention_pooling(self):
        features = uniform(2, 4, 3)
        pooling = layers.SoftAttentionPooling()
        pooled, weights = pooling(features, return_attention_scores=True)
        np.testing.assert_allclose(as_numpy(keras.ops.sum(weights, axis=1)), [1.0, 1.0], rtol=1e-6)
        np.testing.assert_allclose(
            as_numpy(pooled), np.einsum("bn,bnd->bd", as_numpy(weights), features), rtol=1e-5
        )
        # Equal scores: the plain mean of the cells.
        pooling.attention.score.set_weights([np.zeros((3, 1)), np.zeros((1,))])
        np.testing.assert_allclose(as_numpy(pooling(features)), features.mean(1), rtol=1e-5)
        self.run_layer_test(layers.SoftAttentionPooling, {}, [uniform(2, 4, 3)], (2, 3))
        self.run_layer_test(layers.SoftAttentionWeights, {}, [uniform(2, 4, 3)], (2, 4))

    def test_keep_all_mask(self):
        np.testing.assert_array_equal(as_numpy(layers.KeepAllMask()(uniform(2, 3))), np.ones((2, 3)))
        self.run_layer_test(layers.KeepAllMask, {}, [uniform(2, 3)], (2, 3))

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, r"`max_cells` must be in \[1, num_cells\], received 0"):
            layers.RelationalAggregation(max_cells=0)
        with self.assertRaisesRegex(ValueError, r"`max_cells` must be in \[1, num_cells\] = \[1, 4\], received 5"):
            layers.RelationalAggregation(max_cells=5)(uniform(1, 4, 2), uniform(1, 4))
        with self.assertRaisesRegex(ValueError, r"`hidden_units` must be a non-empty tuple .* received \(\)"):
            layers.RelationalAggregation(hidden_units=())
        with self.assertRaisesRegex(ValueError, "`units` must be a positive int, received 0"):
            layers.FlattenHead(units=0)


class GradientTest(unittest.TestCase):
    """The encoders learn only through the kept cells."""

    def check_gradient(self, aggregate, mask):
        features = tf.constant(uniform(2, 6, 3))
        with tf.GradientTape() as tape:
            tape.watch(features)
            loss = tf.reduce_sum(aggregate(features, mask) ** 2)
        grad = np.abs(tape.gradient(loss, features).numpy()).sum(-1)  # (B, N)
        np.testing.assert_array_equal(grad[mask == 0], 0.0)
        self.assertTrue(np.all(grad[mask == 1] > 0))

    def test_gradient_only_through_kept_cells(self):
        mask = as_numpy(layers.HANMask(k=2)(uniform(2, 6)))
        self.check_gradient(layers.MaskedSumPooling(), mask)
        self.check_gradient(layers.FlattenHead(units=3), mask)
        relational = layers.RelationalAggregation(
            hidden_units=(4,), activation="tanh", max_cells=3
        )
        self.check_gradient(relational, mask)
        self.check_gradient(layers.RelationalAggregation(hidden_units=(4,), activation="tanh"), mask)

    def test_no_gradient_through_selection(self):
        presence = tf.constant(uniform(2, 6))
        for mask_layer in (layers.HANMask(k=2), layers.AdaHANMask()):
            with tf.GradientTape() as tape:
                tape.watch(presence)
                mask = mask_layer(presence)
            self.assertIsNone(tape.gradient(mask, presence))


class HelperLayersTest(LayerTestCase):
    def test_broadcast_to_cells(self):
        vector = np.array([[1.0, 2.0], [3.0, 4.0]], "float32")
        output = as_numpy(layers.BroadcastToCells()(vector, np.zeros((2, 3, 3, 5), "float32")))
        self.assertEqual(output.shape, (2, 3, 3, 2))
        np.testing.assert_array_equal(output[1, 2, 0], [3.0, 4.0])
        self.run_layer_test(
            layers.BroadcastToCells, {}, [uniform(2, 4), uniform(2, 3, 3, 5)], (2, 3, 3, 4)
        )

    def test_batch_axis_layers(self):
        x = np.array([[1.0], [2.0]], "float32")
        np.testing.assert_array_equal(as_numpy(layers.RepeatBatch(2)(x)), [[1], [1], [2], [2]])
        questions = np.arange(12, dtype="int32").reshape(2, 3, 2)
        merged = as_numpy(layers.MergeLeadingAxes()(questions))
        np.testing.assert_array_equal(merged, questions.reshape(6, 2))
        np.testing.assert_array_equal(as_numpy(layers.SplitLeadingAxis(3)(merged)), questions)
        self.run_layer_test(
            layers.RepeatBatch, {"repeats": 3}, [uniform(2, 4)], (6, 4),
            restore_batch=layers.SplitLeadingAxis(3),
        )
        self.run_layer_test(
            layers.MergeLeadingAxes, {}, [uniform(2, 3, 4)], (6, 4),
            restore_batch=layers.SplitLeadingAxis(3),
        )
        self.run_layer_test(
            layers.SplitLeadingAxis, {"size": 2}, [uniform(4, 3)], (2, 2, 3),
            restore_batch=layers.RepeatBatch(2),
        )
        with self.assertRaisesRegex(ValueError, "`repeats` must be a positive int, received 0"):
            layers.RepeatBatch(0)
        with self.assertRaisesRegex(ValueError, "`size` must be a positive int, received 0"):
            layers.SplitLeadingAxis(0)

    def test_append_cell_coordinates(self):
        features = np.full((2, 9, 1), 7.0, "float32")  # A 3x3 grid, row-major.
        output = as_numpy(layers.AppendCellCoordinates()(features))
        self.assertEqual(output.shape, (2, 9, 3))
        np.testing.assert_array_equal(output[:, :, 0], 7.0)
        np.testing.assert_allclose(output[1, :, 1:], [
            [-1, -1], [-1, 0], [-1, 1], [0, -1], [0, 0], [0, 1], [1, -1], [1, 0], [1, 1]])
        self.run_layer_test(layers.AppendCellCoordinates, {}, [uniform(2, 4, 3)], (2, 4, 5))
        with self.assertRaisesRegex(ValueError, "square grid, received 5 cells"):
            layers.AppendCellCoordinates()(uniform(1, 5, 2))

    def test_split_channels(self):
        x = np.arange(2 * 2 * 2 * 5, dtype="float32").reshape(2, 2, 2, 5)
        local, context = layers.SplitChannels(2)(x)
        np.testing.assert_array_equal(as_numpy(local), x[..., :2])
        np.testing.assert_array_equal(as_numpy(context), x[..., 2:])
        layer = layers.SplitChannels(2)
        self.assertEqual(layers.SplitChannels.from_config(layer.get_config()).channels, 2)
        symbolic = layer(keras.Input((3, 3, 5)))
        self.assertEqual([tuple(t.shape) for t in symbolic], [(None, 3, 3, 2), (None, 3, 3, 3)])
        with self.assertRaisesRegex(ValueError, "`channels` must be a positive int, received 0"):
            layers.SplitChannels(0)
        with self.assertRaisesRegex(ValueError, "`channels` must be a positive int, received True"):
            layers.SplitChannels(True)
        # A NumPy integer, as Keras's own layers take (it was refused as not an int).
        self.assertEqual(layers.SplitChannels(np.int64(2)).channels, 2)
        self.assertIs(type(layers.SplitChannels(np.int64(2)).get_config()["channels"]), int)
        with self.assertRaisesRegex(ValueError, "smaller than the input's 5 channels, received 5"):
            layers.SplitChannels(5)(keras.Input((3, 3, 5)))
        # The gradient reaches each input channel from the part that holds it.
        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            local, context = layer(x)
            loss = tf.reduce_sum(local * 2.0) + tf.reduce_sum(context * 3.0)
        np.testing.assert_array_equal(tape.gradient(loss, x).numpy()[0, 0, 0], [2, 2, 3, 3, 3])



class BatchNormalizationTest(LayerTestCase):
    def train_step(self, layer, x, weights):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * weights)
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        return [as_numpy(v) for v in [y, *grads, layer.moving_mean, layer.moving_variance]]

    def test_trains_and_infers_as_keras_batch_normalization(self):
        for shape in [(4, 6, 6, 5), (1, 1, 1, 3)]:
            x = tf.constant(RNG.normal(2.0, 3.0, shape).astype("float32"))
            weights = tf.constant(uniform(*shape))
            keras_bn = keras.layers.BatchNormalization(momentum=0.9)
            fused_bn = layers.BatchNormalization(momentum=0.9)
            for layer in (keras_bn, fused_bn):
                layer.build(shape)
                layer.gamma.assign(np.linspace(0.5, 2.0, shape[-1]))
                layer.beta.assign(np.linspace(-1.0, 1.0, shape[-1]))
            # Two steps: the second starts from moving statistics the first updated.
            for _ in range(2):
                expected = self.train_step(keras_bn, x, weights)
                actual = self.train_step(fused_bn, x, weights)
                for name, e, a in zip(["output", "d input", "d gamma", "d beta",
                                       "moving mean", "moving variance"], expected, actual):
                    np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4, err_msg=name)
            np.testing.assert_allclose(as_numpy(fused_bn(x, training=False)),
                                       as_numpy(keras_bn(x, training=False)), atol=1e-5)
        self.assertIsInstance(fused_bn, keras.layers.BatchNormalization)
        restored = layers.BatchNormalization.from_config(fused_bn.get_config())
        self.assertEqual(restored.momentum, 0.9)

    def test_trains_in_bfloat16_through_the_fused_kernel(self):
        # --dtype mixed_bfloat16: bfloat16 in and out, float32 weights and statistics.
        shape = (4, 6, 6, 5)
        x = tf.constant(RNG.normal(2.0, 3.0, shape).astype("float32"), tf.bfloat16)
        weights = tf.constant(uniform(*shape), tf.bfloat16)
        keras_bn = keras.layers.BatchNormalization(momentum=0.9, dtype="mixed_bfloat16")
        fused_bn = layers.BatchNormalization(momentum=0.9, dtype="mixed_bfloat16")
        for layer in (keras_bn, fused_bn):
            layer.build(shape)
            layer.gamma.assign(np.linspace(0.5, 2.0, shape[-1]))
        expected = self.train_step(keras_bn, x, weights)
        actual = self.train_step(fused_bn, x, weights)
        self.assertEqual(actual[0].dtype, tf.bfloat16.as_numpy_dtype)
        for name, e, a in zip(["output", "d input", "d gamma", "d beta", "moving mean",
                               "moving variance"], expected, actual):
            e, a = np.asarray(e, np.float32), np.asarray(a, np.float32)
            np.testing.assert_allclose(a, e, rtol=2e-2, atol=2e-2 * np.abs(e).max(),
                                       err_msg=name)
        graph = tf.function(lambda x: fused_bn(x, training=True)).get_concrete_function(
            x).graph
        self.assertIn("FusedBatchNormV3", {op.type for op in graph.get_operations()})
        # A plain bfloat16 policy (bfloat16 weights, which the kernel does not take) trains
        # through Keras' ops.
        plain = layers.BatchNormalization(dtype="bfloat16")
        self.assertEqual(plain(x, training=True).dtype, tf.bfloat16)


class ConvAveragePoolTest(LayerTestCase):
    def pytorch_conv_then_pool(self, x, kernel, bias, pool, stride):
        """Conv2d(padding=k//2) then AvgPool2d(pool, stride, pool//2), count_include_pad."""
        k = kernel.shape[0]
        xp = np.pad(x, [(0, 0), (k // 2,) * 2, (k // 2,) * 2, (0, 0)])
        h, w = x.shape[1:3]
        conv = np.zeros(x.shape[:3] + (kernel.shape[-1],))
        for i in range(h):
            for j in range(w):
                conv[:, i, j] = np.einsum("bhwc,hwcf->bf", xp[:, i:i + k, j:j + k], kernel) + bias
        cp = np.pad(conv, [(0, 0), (pool // 2,) * 2, (pool // 2,) * 2, (0, 0)])
        out_h, out_w = -(-h // stride), -(-w // stride)
        return np.stack([np.stack([
            cp[:, i * stride:i * stride + pool, j * stride:j * stride + pool].sum((1, 2))
            / pool**2 for j in range(out_w)], 1) for i in range(out_h)], 1)

    def test_matches_conv_then_pool_away_from_top_left_border(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(2, 10, 8, 3)).astype("float32")  # Even: no bottom overhang.
        layer = layers.ConvAveragePool2D(4, kernel_size=5, pool_size=3, pool_strides=2)
        out = as_numpy(layer(x))
        self.assertEqual(out.shape, (2, 5, 4, 4))
        self.assertEqual(layer(np.zeros((1, 9, 9, 3), "float32")).shape, (1, 5, 5, 4))
        layer.bias.assign(rng.normal(size=4).astype("float32"))
        out = as_numpy(layer(x))
        expected = self.pytorch_conv_then_pool(
            x, as_numpy(layer.kernel), as_numpy(layer.bias), pool=3, stride=2)
        np.testing.assert_allclose(out[:, 1:, 1:], expected[:, 1:, 1:], rtol=1e-4, atol=1e-4)
        self.assertFalse(np.allclose(out[:, 0], expected[:, 0], atol=1e-4))

    def test_fold_keeps_the_function(self):
        rng = np.random.default_rng(1)
        # (filters, input width, pool stride, outputs computed as one): 8 filters -> two
        # neighbours as 16 channels, at strides 2, 1 and 3 and an odd input width (an odd
        # output width, 5, falls back when called); other filter counts are not merged.
        for filters, width, stride, merged in ((8, 16, 2, 2), (8, 15, 2, 2), (8, 12, 1, 2),
                                               (8, 18, 3, 2), (8, 10, 2, 2), (4, 16, 2, 1),
                                               (2, 64, 2, 1)):
            x = rng.normal(size=(2, 12, width, 3)).astype("float32")
            layer = layers.ConvAveragePool2D(filters, kernel_size=5, pool_size=3,
                                             pool_strides=stride)
            layer(x)
            layer.bias.assign(rng.normal(size=filters).astype("float32"))
            before = as_numpy(layer(x))
            layer.fold()
            after = as_numpy(layer(x))
            self.assertEqual(after.shape, (2, -(-12 // stride), -(-width // stride), filters))
            np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)
            self.assertEqual(layer._outputs_merged, merged)
            if merged > 1:
                self.assertEqual(layer._merged_kernel.shape, (7, 7 + stride, 3, 16))

    def test_layer_behaviours(self):
        self.run_layer_test(
            layers.ConvAveragePool2D,
            {"filters": 2, "kernel_size": 3, "pool_size": 3, "pool_strides": 2},
            [uniform(2, 8, 8, 3)], (2, 4, 4, 2),
        )
        with self.assertRaisesRegex(ValueError, "`kernel_size` must be odd .* received 4"):
            layers.ConvAveragePool2D(2, kernel_size=4, pool_size=3)
        with self.assertRaisesRegex(ValueError, "`filters` must be a positive int, received 0"):
            layers.ConvAveragePool2D(0, kernel_size=3, pool_size=3)
        # NumPy integers (a grid computed with NumPy), stored as ints: it refused them.
        pool = layers.ConvAveragePool2D(np.int64(2), kernel_size=np.int32(3), pool_size=3)
        self.assertEqual(pool(uniform(2, 8, 8, 3)).shape, (2, 4, 4, 2))
        self.assertIs(type(pool.get_config()["kernel_size"]), int)


class MaskedGRUTest(LayerTestCase):
    # Numerics against keras.layers.GRU and the PyTorch reference: tests/test_reference_exact.py.
    def test_layer_behaviours(self):
        self.run_layer_test(layers.MaskedGRU, {"units": 3}, [uniform(2, 5, 4)], (2, 3))

    def test_masked_steps_keep_the_state(self):
        x = uniform(2, 4, 3)
        layer = layers.MaskedGRU(5)
        mask = np.array([[0, 0, 1, 1], [1, 1, 1, 1]], bool)
        np.testing.assert_allclose(as_numpy(layer(x, mask=mask))[0], as_numpy(layer(x[:1, 2:]))[0],
                                   rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(as_numpy(layer(x, mask=np.zeros((2, 4), bool))), 0.0)


if __name__ == "__main__":
    unittest.main()
