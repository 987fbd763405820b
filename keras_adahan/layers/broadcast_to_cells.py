import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_adahan")
class BroadcastToCells(keras.layers.Layer):
    """Copies one vector per example (the question) to every cell of a grid.

    The question vector is fused with each cell's image features, by
    concatenation (the paper) or addition (the PyTorch reference); this layer
    lays it out on the grid so that a `Concatenate` or `Add` layer can do so.

    Args:
        **kwargs: keyword arguments passed to `keras.layers.Layer`, including
            `name`, `dtype` etc.

    Call arguments:
        vector: float tensor of shape `(batch_size, channels)`.
        cells: float tensor of shape `(batch_size, height, width, any)`; only
            its shape is used.

    Returns:
        A float tensor of shape `(batch_size, height, width, channels)`.

    Example:

    ```python
    question = np.ones((2, 8))
    cells = np.zeros((2, 4, 4, 16))
    keras_adahan.layers.BroadcastToCells()(question, cells)  # (2, 4, 4, 8)
    ```

    Reference:
     - [Malinowski et al., 2018](https://arxiv.org/abs/1808.00300), Sec. 3.
    """

    def call(self, vector, cells):
        # Adding to zeros (rather than `broadcast_to`) takes the batch size
        # from `cells` and converts to plain TFLite builtins.
        zeros = ops.zeros_like(cells[..., :1], dtype=vector.dtype)  # (B, H, W, 1)
        return zeros + vector[:, None, None, :]  # (B, H, W, C)

    def compute_output_shape(self, vector_shape, cells_shape):
        return tuple(cells_shape[:-1]) + (vector_shape[-1],)
