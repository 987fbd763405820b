import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_adahan")
class MaskedSumPooling(keras.layers.Layer):
    """Sum of the cell features over the kept cells.

    The sum-pooling aggregator of HAN: `sum_i mask_i * x_i`. Dropped cells
    contribute nothing, neither to the output nor to the gradient. Given
    soft weights instead of a 0/1 mask, this is a weighted sum; given no mask,
    it sums over all cells (the no-attention baseline).

    Args:
        **kwargs: keyword arguments passed to `keras.layers.Layer`, including
            `name`, `dtype` etc.

    Call arguments:
        features: float tensor of shape `(batch_size, num_cells, channels)`.
        cell_mask: optional float tensor of shape `(batch_size, num_cells)`,
            1.0 at kept cells and 0.0 at dropped ones. `None` keeps all cells.

    Returns:
        A float tensor of shape `(batch_size, channels)`.

    Example:

    ```python
    features = np.array([[[1.0, 2.0], [10.0, 20.0], [100.0, 200.0]]])
    mask = np.array([[1.0, 0.0, 1.0]])
    keras_adahan.layers.MaskedSumPooling()(features, mask)  # [[101., 202.]]
    ```

    Reference:
     - [Malinowski et al., 2018](https://arxiv.org/abs/1808.00300), Sec. 3.3.
    """

    def call(self, features, cell_mask=None):
        if cell_mask is None:
            return ops.sum(features, axis=1)
        cell_mask = ops.cast(cell_mask, features.dtype)
        return ops.sum(features * cell_mask[:, :, None], axis=1)  # (B, D)

    def compute_output_shape(self, features_shape, cell_mask_shape=None):
        return (features_shape[0], features_shape[-1])
