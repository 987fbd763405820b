import keras
import numpy as np
from keras import ops

from keras_adahan.layers.arguments import positive_int

# Output channels that XNNPACK's float conv kernels compute at once with AVX-512 (its f32
# igemm kernels there take a multiple of 16): fewer filters leave lanes idle. See `fold`.
CONV_LANES = 16


@keras.saving.register_keras_serializable(package="keras_adahan")
class ConvAveragePool2D(keras.layers.Layer):
    """A convolution followed by average pooling, computed as one strided conv.

    The PyTorch reference's image encoder is `Conv2d(k, padding=k//2)` then
    `AvgPool2d(p, stride=s, padding=p//2)`. Both are linear, so together they
    are one conv whose kernel is the conv kernel blurred by the `p x p` box,
    applied at stride `s`: the same function for a fraction of the work (the
    full-resolution conv output is never made). The trainable weights are the
    `k x k` kernel and bias, as in the reference.

    Borders follow PyTorch's pooling (`count_include_pad=True`: every window
    divides by `p * p`). The one difference: where a pooling window hangs over
    the edge, PyTorch averages in zeros and this layer the conv of the
    zero-padded input there, so the first output row and column differ (and
    the last ones, for odd input sizes).

    Args:
        filters: int. Output channels.
        kernel_size: int. Odd side of the square conv kernel.
        pool_size: int. Odd side of the square pooling window.
        pool_strides: int. Pooling stride. Defaults to 2.
        **kwargs: keyword arguments passed to `keras.layers.Layer`.

    Call arguments:
        inputs: float tensor of shape `(batch_size, height, width, channels)`.

    Returns:
        A float tensor of shape
        `(batch_size, ceil(height / pool_strides), ceil(width / pool_strides), filters)`.

    Example:

    ```python
    layer = ConvAveragePool2D(8, kernel_size=5, pool_size=3, pool_strides=2)
    layer(np.zeros((1, 256, 256, 3)))  # (1, 128, 128, 8)
    ```

    Reference:
     - [PyTorch-AdaHAN](https://github.com/gnouhp/PyTorch-AdaHAN), its image encoder.
    """

    def __init__(self, filters, kernel_size, pool_size, pool_strides=2, **kwargs):
        super().__init__(**kwargs)
        filters, kernel_size, pool_size, pool_strides = (
            positive_int(name, value) for name, value in (
                ("filters", filters), ("kernel_size", kernel_size), ("pool_size", pool_size),
                ("pool_strides", pool_strides)))
        for name, value in (("kernel_size", kernel_size), ("pool_size", pool_size)):
            if value % 2 == 0:
                raise ValueError(f"`{name}` must be odd (centred padding), received {value}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.pool_size = pool_size
        self.pool_strides = pool_strides
        self._folded_kernel = None
        self._outputs_merged = 1  # Set by `fold`, with `_merged_kernel` and `_merged_bias`.

    def build(self, input_shape):
        self.kernel = self.add_weight(
            shape=(self.kernel_size, self.kernel_size, input_shape[-1], self.filters),
            initializer="glorot_uniform", name="kernel",
        )
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")

    def composite_kernel(self):
        """The k x k kernel convolved with a p x p box of 1/p^2: `(k+p-1, k+p-1, C_in, C_out)`."""
        k, p = self.kernel_size, self.pool_size
        padded = ops.pad(self.kernel, [[p - 1, p - 1], [p - 1, p - 1], [0, 0], [0, 0]])
        size = k + p - 1
        kernel = 0.0
        for a in range(p):
            for b in range(p):
                kernel = kernel + padded[a : a + size, b : b + size]
        return kernel / (p * p)

    def fold(self):
        """Freezes the composite kernel into a constant, for export (no more training).

        A TFLite int8 converter sees a computed kernel as an activation and cannot
        quantize the conv; a constant kernel quantizes like any conv weight.

        With half `CONV_LANES` filters (the reference preset's 8), the folded conv computes
        two horizontally adjacent outputs as the channels of one output (a kernel
        `pool_strides` columns wider, zero where an output does not see the input, at twice
        the horizontal stride), then reshapes them back: the same function, with every lane
        of XNNPACK's kernels busy with AVX-512 (measured in docs/export.md; fewer filters, more
        outputs merged, were not). Where the output's width is odd, it does not.
        """
        kernel = ops.convert_to_numpy(self.composite_kernel())
        bias = ops.convert_to_numpy(self.bias)
        merged = 2 if 2 * self.filters == CONV_LANES else 1
        if merged > 1:
            size, _, channels, filters = kernel.shape
            step = self.pool_strides
            wide = np.zeros((size, size + step * (merged - 1), channels, merged, filters),
                            kernel.dtype)
            for offset in range(merged):
                wide[:, step * offset:step * offset + size, :, offset] = kernel
            self._merged_kernel = wide.reshape(size, -1, channels, merged * filters)
            self._merged_bias = np.tile(bias, merged)
        self._folded_kernel = kernel
        self._outputs_merged = merged

    def call(self, inputs):
        kernel = self.composite_kernel() if self._folded_kernel is None else self._folded_kernel
        # The conv's k//2 padding plus the pool's p//2, on each side.
        pad = (kernel.shape[0] - 1) // 2
        x = ops.pad(inputs, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        merged = self._outputs_merged
        height, width = self.compute_output_shape(inputs.shape)[1:3]
        if merged > 1 and height is not None and width is not None and width % merged == 0:
            y = ops.conv(x, self._merged_kernel, strides=(self.pool_strides,
                         self.pool_strides * merged), padding="valid") + self._merged_bias
            return ops.reshape(y, (-1, height, width, self.filters))
        return ops.conv(x, kernel, strides=self.pool_strides, padding="valid") + self.bias

    def compute_output_shape(self, input_shape):
        def out(n):
            return None if n is None else -(-n // self.pool_strides)

        return (input_shape[0], out(input_shape[1]), out(input_shape[2]), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "pool_size": self.pool_size,
            "pool_strides": self.pool_strides,
        })
        return config
