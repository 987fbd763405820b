import numbers

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_adahan")
class RelationalAggregation(keras.layers.Layer):
    """Pairwise relational aggregation over the kept cells.

    The relational (non-local) aggregator of HAN: an MLP `g` is applied to
    every ordered pair `(x_i, x_j)` of cells, and `sum_ij m_i m_j g(x_i, x_j)`
    is returned, so pairs with a dropped cell contribute nothing, neither to
    the output nor to the gradient. The first layer of `g` acts on the
    concatenation `[x_i, x_j]`; it is computed as `W_a x_i + W_b x_j + b`, one
    matrix product per cell rather than per pair. Given a `question` vector,
    `g` reads it too, `g(x_i, x_j, q)` as in Santoro et al.'s relation
    network: `W_a x_i + W_b x_j + W_q q + b`.

    The cost grows with the square of the number of cells, which is why hard
    attention matters here: with `max_cells` set, the `max_cells` cells of
    highest mask value (the kept cells, lower index first) are gathered before
    pairing, and the cost is `O(max_cells**2)` instead of `O(num_cells**2)`.
    Set `max_cells = k` for HAN, or to AdaHAN's ceiling. Leave it `None` only
    for small grids. If more cells than `max_cells` are kept, the surplus is
    ignored.

    Args:
        hidden_units: tuple of ints. Widths of the layers of `g`; the output
            has `hidden_units[-1]` channels. Defaults to `(64, 64)`.
        activation: string or `keras.activations`. Activation of every layer
            of `g`. Defaults to `"relu"`.
        max_cells: int or `None`. Number of cells gathered before pairing, in
            `[1, num_cells]`; `None` pairs all cells. Defaults to `None`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`,
            including `name`, `dtype` etc.

    Call arguments:
        features: float tensor of shape `(batch_size, num_cells, channels)`.
        cell_mask: float tensor of shape `(batch_size, num_cells)`, 1.0 at
            kept cells and 0.0 at dropped ones (or soft weights).
        question: optional float tensor of shape `(batch_size, units)`, read
            by `g` with every pair.

    Returns:
        A float tensor of shape `(batch_size, hidden_units[-1])`.

    Example:

    ```python
    features = np.random.uniform(size=(2, 16, 8))
    mask = keras_adahan.layers.HANMask(k=4)(np.random.uniform(size=(2, 16)))
    relational = keras_adahan.layers.RelationalAggregation(
        hidden_units=(32, 32), max_cells=4)
    relational(features, mask)  # (2, 32)
    ```

    Reference:
     - [Malinowski et al., 2018](https://arxiv.org/abs/1808.00300), Sec. 3.3.
     - [Santoro et al., 2017](https://arxiv.org/abs/1706.01427), relation
       networks.
    """

    def __init__(self, hidden_units=(64, 64), activation="relu", max_cells=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(hidden_units, numbers.Integral):
            hidden_units = (hidden_units,)
        hidden_units = tuple(hidden_units)
        if not hidden_units or any(
            isinstance(u, bool) or not isinstance(u, numbers.Integral) or u < 1
            for u in hidden_units
        ):
            raise ValueError(
                "`hidden_units` must be a non-empty tuple of positive ints, "
                f"received {hidden_units}"
            )
        if max_cells is not None and (
            isinstance(max_cells, bool)
            or not isinstance(max_cells, numbers.Integral)
            or max_cells < 1
        ):
            raise ValueError(f"`max_cells` must be in [1, num_cells], received {max_cells}")
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.activation = keras.activations.get(activation)
        self.max_cells = None if max_cells is None else int(max_cells)

        self.pair_left = keras.layers.Dense(
            self.hidden_units[0], dtype=self.dtype_policy, name="pair_left"
        )
        self.pair_right = keras.layers.Dense(
            self.hidden_units[0], use_bias=False, dtype=self.dtype_policy, name="pair_right"
        )
        # Built only when called with a question.
        self.pair_question = keras.layers.Dense(
            self.hidden_units[0], use_bias=False, dtype=self.dtype_policy, name="pair_question"
        )
        self.pair_layers = [
            keras.layers.Dense(
                units,
                activation=self.activation,
                dtype=self.dtype_policy,
                name=f"pair_dense_{index + 1}",
            )
            for index, units in enumerate(self.hidden_units[1:])
        ]

    def build(self, features_shape, cell_mask_shape=None, question_shape=None):
        num_cells = features_shape[1]
        if num_cells is None:
            raise ValueError(
                "`RelationalAggregation` needs a static number of cells, received "
                f"features shape {features_shape}"
            )
        if self.max_cells is not None and self.max_cells > num_cells:
            raise ValueError(
                f"`max_cells` must be in [1, num_cells] = [1, {num_cells}], "
                f"received {self.max_cells}"
            )
        self.pair_left.build(features_shape)
        self.pair_right.build(features_shape)
        if question_shape is not None:
            self.pair_question.build(question_shape)
        shape = (features_shape[0], None, None, self.hidden_units[0])
        for layer in self.pair_layers:
            layer.build(shape)
            shape = shape[:-1] + (layer.units,)

    def call(self, features, cell_mask, question=None):
        num_cells = features.shape[1]
        cell_mask = ops.cast(cell_mask, features.dtype)
        if self.max_cells is not None and self.max_cells < num_cells:
            # Gather the kept cells with a one-hot matmul (a TFLite builtin);
            # cells that are not gathered get no gradient.
            _, indices = ops.top_k(cell_mask, k=self.max_cells)  # (B, K)
            select = ops.one_hot(indices, num_cells, dtype=features.dtype)  # (B, K, N)
            features = ops.matmul(select, features)  # (B, K, D)
            cell_mask = ops.sum(select * cell_mask[:, None, :], axis=-1)  # (B, K)
        left = self.pair_left(features)[:, :, None, :]  # (B, K, 1, H)
        right = self.pair_right(features)[:, None, :, :]  # (B, 1, K, H)
        pairs = left + right  # (B, K, K, H)
        if question is not None:
            pairs = pairs + self.pair_question(question)[:, None, None, :]
        pairs = self.activation(pairs)
        for layer in self.pair_layers:
            pairs = layer(pairs)
        pair_mask = cell_mask[:, :, None] * cell_mask[:, None, :]  # (B, K, K)
        return ops.sum(pairs * pair_mask[:, :, :, None], axis=(1, 2))  # (B, H)

    def compute_output_shape(self, features_shape, cell_mask_shape=None, question_shape=None):
        return (features_shape[0], self.hidden_units[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_units": self.hidden_units,
                "activation": keras.activations.serialize(self.activation),
                "max_cells": self.max_cells,
            }
        )
        return config
