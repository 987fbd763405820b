import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_adahan")
class MergeLeadingAxes(keras.layers.Layer):
    """Merges the batch axis and the next one: `(B, Q, ...) -> (B * Q, ...)`.

    Turns a batch of images with `Q` questions each into a batch of `B * Q`
    questions, image-major (the order of `RepeatBatch`). `keras.layers.Reshape`
    cannot do this, as it never touches the batch axis.

    Args:
        **kwargs: keyword arguments passed to `keras.layers.Layer`, including
            `name`, `dtype` etc.

    Call arguments:
        inputs: tensor of shape `(batch_size, size, ...)`, all axes but the
            batch axis static.

    Returns:
        A tensor of shape `(batch_size * size, ...)`.

    Example:

    ```python
    questions = np.zeros((8, 3, 12), dtype="int32")
    keras_adahan.layers.MergeLeadingAxes()(questions)  # (24, 12)
    ```
    """

    def call(self, inputs):
        return ops.reshape(inputs, (-1,) + tuple(inputs.shape[2:]))

    def compute_output_shape(self, inputs_shape):
        batch, size = inputs_shape[0], inputs_shape[1]
        merged = None if batch is None or size is None else batch * size
        return (merged,) + tuple(inputs_shape[2:])
