import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_adahan")
class KeepAllMask(keras.layers.Layer):
    """A mask keeping every cell: the "mask" of the soft and no-attention baselines.

    Gives the baselines the same outputs as HAN and AdaHAN (`presence` and a
    0/1 `mask`), so evaluation and plots need no special case.

    Args:
        **kwargs: keyword arguments passed to `keras.layers.Layer`, including
            `name`, `dtype` etc.

    Call arguments:
        inputs: float tensor of shape `(batch_size, num_cells)`, e.g. the
            presence of every cell; only its shape is used.

    Returns:
        A float tensor of ones, of the shape of `inputs`.

    Example:

    ```python
    keras_adahan.layers.KeepAllMask()(np.array([[0.3, 2.0]]))  # [[1., 1.]]
    ```

    Reference:
     - [Malinowski et al., 2018](https://arxiv.org/abs/1808.00300), Sec. 4
       (the "no attention" baseline).
    """

    def call(self, inputs):
        return ops.ones_like(inputs, dtype=self.compute_dtype)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)
