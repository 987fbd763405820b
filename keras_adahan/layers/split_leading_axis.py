import keras
from keras import ops

from keras_adahan.layers.arguments import positive_int


@keras.saving.register_keras_serializable(package="keras_adahan")
class SplitLeadingAxis(keras.layers.Layer):
    """Splits the batch axis: `(B * size, ...) -> (B, size, ...)`.

    The inverse of `MergeLeadingAxes`: gives the training model's per-question
    outputs back their `(images, questions)` layout.

    Args:
        size: int. Length of the new second axis, >= 1.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`,
            including `name`, `dtype` etc.

    Call arguments:
        inputs: tensor of shape `(batch_size * size, ...)`, all axes but the
            batch axis static.

    Returns:
        A tensor of shape `(batch_size, size, ...)`.

    Example:

    ```python
    logits = np.zeros((24, 4))
    keras_adahan.layers.SplitLeadingAxis(3)(logits)  # (8, 3, 4)
    ```
    """

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        self.size = positive_int("size", size)

    def call(self, inputs):
        return ops.reshape(inputs, (-1, self.size) + tuple(inputs.shape[1:]))

    def compute_output_shape(self, inputs_shape):
        batch = None if inputs_shape[0] is None else inputs_shape[0] // self.size
        return (batch, self.size) + tuple(inputs_shape[1:])

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size})
        return config
