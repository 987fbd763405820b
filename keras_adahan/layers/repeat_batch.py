import keras
from keras import ops

from keras_adahan.layers.arguments import positive_int


@keras.saving.register_keras_serializable(package="keras_adahan")
class RepeatBatch(keras.layers.Layer):
    """Repeats every example `repeats` times along the batch axis.

    `(B, ...) -> (B * repeats, ...)`, each example's copies next to each
    other, in the order `MergeLeadingAxes` flattens `(B, repeats, ...)`. The
    training model encodes each image once and repeats its cell features for
    each of its questions.

    Args:
        repeats: int. Copies of each example, >= 1.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`,
            including `name`, `dtype` etc.

    Call arguments:
        inputs: tensor of shape `(batch_size, ...)`.

    Returns:
        A tensor of shape `(batch_size * repeats, ...)`.

    Example:

    ```python
    x = np.array([[1.0], [2.0]])
    keras_adahan.layers.RepeatBatch(2)(x)  # [[1.], [1.], [2.], [2.]]
    ```
    """

    def __init__(self, repeats, **kwargs):
        super().__init__(**kwargs)
        self.repeats = positive_int("repeats", repeats)

    def call(self, inputs):
        return ops.repeat(inputs, self.repeats, axis=0)

    def compute_output_shape(self, inputs_shape):
        batch = None if inputs_shape[0] is None else inputs_shape[0] * self.repeats
        return (batch,) + tuple(inputs_shape[1:])

    def get_config(self):
        config = super().get_config()
        config.update({"repeats": self.repeats})
        return config
