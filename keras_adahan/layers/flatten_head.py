import keras
from keras import ops

from keras_adahan.layers.arguments import positive_int


@keras.saving.register_keras_serializable(package="keras_adahan")
class FlattenHead(keras.layers.Layer):
    """The PyTorch reference's head: one Dense layer over the masked cell values.

    Each cell's channels are summed into one value, dropped cells are set to
    zero, and the resulting `num_cells`-vector goes through one Dense layer:
    with the reference's 32x32 grid that is `Linear(1024 -> classes)`. Unlike
    sum pooling, the head knows where each kept cell lies, since every cell
    position has its own weights.

    Args:
        units: int. Output width, e.g. the number of answer classes.
        activation: string or `keras.activations`. Activation of the Dense
            layer. Defaults to `None` (logits).
        **kwargs: other keyword arguments passed to `keras.layers.Layer`,
            including `name`, `dtype` etc.

    Call arguments:
        features: float tensor of shape `(batch_size, num_cells, channels)`.
        cell_mask: optional float tensor of shape `(batch_size, num_cells)`,
            1.0 at kept cells and 0.0 at dropped ones. `None` keeps all cells.

    Returns:
        A float tensor of shape `(batch_size, units)`.

    Example:

    ```python
    features = np.random.uniform(size=(2, 1024, 2))
    mask = keras_adahan.layers.HANMask(k=2)(np.random.uniform(size=(2, 1024)))
    logits = keras_adahan.layers.FlattenHead(units=4)(features, mask)  # (2, 4)
    ```

    Reference:
     - PyTorch-AdaHAN (gnouhp), `models.py`: the `m_vector` and `fc1`.
    """

    def __init__(self, units, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.units = positive_int("units", units)
        self.activation = keras.activations.get(activation)
        self.dense = keras.layers.Dense(
            self.units, activation=self.activation, dtype=self.dtype_policy, name="dense"
        )

    def build(self, features_shape, cell_mask_shape=None):
        if features_shape[1] is None:
            raise ValueError(
                "`FlattenHead` needs a static number of cells, received features "
                f"shape {features_shape}"
            )
        self.dense.build((features_shape[0], features_shape[1]))

    def call(self, features, cell_mask=None):
        values = ops.sum(features, axis=-1)  # (B, N, D) -> (B, N)
        if cell_mask is not None:
            values = values * ops.cast(cell_mask, values.dtype)
        return self.dense(values)

    def compute_output_shape(self, features_shape, cell_mask_shape=None):
        return (features_shape[0], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": keras.activations.serialize(self.activation),
            }
        )
        return config
