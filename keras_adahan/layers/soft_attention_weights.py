import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_adahan")
class SoftAttentionWeights(keras.layers.Layer):
    """Soft attention weights over the cells, from a learned 1x1 score.

    A `Dense(1)` scores every cell (a 1x1 convolution on the grid), and a
    softmax over the cells turns the scores into weights that sum to one.
    Unlike HAN, no cell is ever dropped. Used by `SoftAttentionPooling`, and
    on its own to weight the cells fed to another aggregator.

    Args:
        **kwargs: keyword arguments passed to `keras.layers.Layer`, including
            `name`, `dtype` etc.

    Call arguments:
        inputs: float tensor of shape `(batch_size, num_cells, channels)`.

    Returns:
        A float tensor of shape `(batch_size, num_cells)`, summing to one
        over the cells.

    Example:

    ```python
    features = np.random.uniform(size=(2, 16, 8))
    weights = keras_adahan.layers.SoftAttentionWeights()(features)  # (2, 16)
    ```

    Reference:
     - [Xu et al., 2015](https://arxiv.org/abs/1502.03044), soft attention;
       the soft-attention baseline of
       [Malinowski et al., 2018](https://arxiv.org/abs/1808.00300).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.score = keras.layers.Dense(1, dtype=self.dtype_policy, name="score")

    def build(self, inputs_shape):
        self.score.build(inputs_shape)

    def call(self, inputs):
        scores = ops.squeeze(self.score(inputs), axis=-1)  # (B, N)
        return ops.softmax(scores, axis=-1)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape[:-1])
