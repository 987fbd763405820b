import keras
from keras import ops

from keras_adahan.layers.soft_attention_weights import SoftAttentionWeights


@keras.saving.register_keras_serializable(package="keras_adahan")
class SoftAttentionPooling(keras.layers.Layer):
    """Soft attention pooling: a softmax-weighted sum over all cells.

    The soft attention baseline: a learned 1x1 score per cell, a softmax over
    the cells, and the weighted sum of the cell features. Every cell
    contributes, so its cost and gradient reach the whole grid.

    Args:
        **kwargs: keyword arguments passed to `keras.layers.Layer`, including
            `name`, `dtype` etc.

    Call arguments:
        inputs: float tensor of shape `(batch_size, num_cells, channels)`.
        return_attention_scores: bool. If `True`, also return the weights.
            Defaults to `False`.

    Returns:
        A float tensor of shape `(batch_size, channels)`, or the tuple
        `(pooled, weights)` with weights of shape `(batch_size, num_cells)`.

    Example:

    ```python
    features = np.random.uniform(size=(2, 16, 8))
    pooled = keras_adahan.layers.SoftAttentionPooling()(features)  # (2, 8)
    ```

    Reference:
     - [Xu et al., 2015](https://arxiv.org/abs/1502.03044), soft attention;
       the soft-attention baseline of
       [Malinowski et al., 2018](https://arxiv.org/abs/1808.00300).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.attention = SoftAttentionWeights(dtype=self.dtype_policy, name="attention")

    def build(self, inputs_shape):
        self.attention.build(inputs_shape)

    def call(self, inputs, return_attention_scores=False):
        weights = self.attention(inputs)  # (B, N)
        pooled = ops.sum(inputs * weights[:, :, None], axis=1)  # (B, D)
        if return_attention_scores:
            return pooled, weights
        return pooled
