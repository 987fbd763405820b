import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_adahan")
class L2Presence(keras.layers.Layer):
    """Presence score of each cell: the L2 norm of its fused embedding.

    HAN and AdaHAN add no parameters to score cells. They "bootstrap" on the
    observation that the magnitude of a feature vector tracks how strongly its
    features were detected, so the norm of the fused (image + question)
    embedding of a cell is taken as its presence. The PyTorch reference uses
    the squared norm, which ranks cells the same way but feeds a sharper
    softmax in AdaHAN.

    Args:
        squared: bool. If `True`, return the squared norm `sum(x**2)` (as the
            PyTorch reference does) instead of the norm. Defaults to `False`.
        epsilon: float. The norm is `sqrt(max(sum(x**2), epsilon))`, so its
            gradient stays finite at an all-zero cell. Unused when `squared`.
            Defaults to `1e-12`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`,
            including `name`, `dtype` etc.

    Call arguments:
        inputs: float tensor of shape `(batch_size, num_cells, channels)`, the
            fused embedding of every cell.

    Returns:
        A float tensor of shape `(batch_size, num_cells)`.

    Example:

    ```python
    fused = np.array([[[3.0, 4.0], [1.0, 0.0]]])  # (1, 2, 2)
    keras_adahan.layers.L2Presence()(fused)  # [[5.0, 1.0]]
    keras_adahan.layers.L2Presence(squared=True)(fused)  # [[25.0, 1.0]]
    ```

    Reference:
     - [Malinowski et al., 2018](https://arxiv.org/abs/1808.00300), Sec. 3.
    """

    def __init__(self, squared=False, epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        if epsilon < 0:
            raise ValueError(f"`epsilon` must be >= 0, received {epsilon}")
        self.squared = bool(squared)
        self.epsilon = float(epsilon)

    def call(self, inputs):
        squared_norm = ops.sum(ops.square(inputs), axis=-1)  # (B, N)
        if self.squared:
            return squared_norm
        return ops.sqrt(ops.maximum(squared_norm, self.epsilon))

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape[:-1])

    def get_config(self):
        config = super().get_config()
        config.update({"squared": self.squared, "epsilon": self.epsilon})
        return config
