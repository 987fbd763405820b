import keras
from keras import ops

from keras_adahan.layers.arguments import positive_int


@keras.saving.register_keras_serializable(package="keras_adahan")
class SplitChannels(keras.layers.Layer):
    """Splits a feature map along its last axis into two parts.

    The image encoder of the gated fusion outputs one tensor, a cell's local
    features followed by its wide-context features, so that an image can be
    encoded once and kept as one tensor; this layer takes them apart again.

    Args:
        channels: int. Number of channels of the first part.
        **kwargs: keyword arguments passed to `keras.layers.Layer`.

    Call arguments:
        inputs: float tensor of shape `(..., C)` with `C > channels`.

    Returns:
        Two tensors, `(..., channels)` and `(..., C - channels)`.

    Example:

    ```python
    local, context = SplitChannels(16)(np.zeros((2, 4, 4, 48)))  # 16 and 32 channels
    ```
    """

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = positive_int("channels", channels)

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] <= self.channels:
            raise ValueError(
                f"`channels` must be smaller than the input's {input_shape[-1]} channels, "
                f"received {self.channels}"
            )

    def call(self, inputs):
        # A split, not two slices: TensorFlow's gradient of a slice (StridedSliceGrad) is
        # slow on CPUs; a split's is a concat (docs/speed.md).
        local, context = ops.split(inputs, [self.channels], axis=-1)
        return local, context

    def compute_output_shape(self, input_shape):
        rest = None if input_shape[-1] is None else input_shape[-1] - self.channels
        return (tuple(input_shape[:-1]) + (self.channels,), tuple(input_shape[:-1]) + (rest,))

    def get_config(self):
        config = super().get_config()
        config.update({"channels": self.channels})
        return config
