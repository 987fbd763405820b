import keras
from keras import ops

from keras_adahan.layers.arguments import positive_int


@keras.saving.register_keras_serializable(package="keras_adahan")
class MaskedGRU(keras.layers.Layer):
    """A GRU over a sequence whose masked steps leave the state as it was.

    Given left-padded questions and the mask of their words, the last state is the GRU
    run over the words alone, whatever the padding: the PyTorch reference's question
    encoder, which feeds `nn.GRU` one word at a time. The step is `keras.layers.GRU`'s with
    `reset_after=True`, which is PyTorch's formula:

        z = sigmoid(x Wz + bz + h Uz + cz)        (update gate)
        r = sigmoid(x Wr + br + h Ur + cr)        (reset gate)
        n = tanh(x Wn + bn + r * (h Un + cn))
        h = z * h + (1 - z) * n                   (at masked steps: h = h)

    The weights have `keras.layers.GRU`'s layout: `kernel` (input_dim, 3 * units) and
    `recurrent_kernel` (units, 3 * units) with the gates' columns in the order z, r, n;
    `bias` (2, 3 * units), the input bias then the recurrent bias. The loop is unrolled
    with `keras.ops` only, so it converts to TFLite builtins, masking included (unlike
    Keras' RNN layers, whose export here rebuilds them as a loop without the mask).

    Args:
        units: int. Size of the state.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`, including
            `name`, `dtype` etc.

    Call arguments:
        inputs: float tensor of shape `(batch_size, steps, input_dim)`; `steps` static.
        mask: optional bool or 0/1 tensor of shape `(batch_size, steps)`: true at the steps
            to read. `None` reads every step. Passed by Keras from an
            `Embedding(mask_zero=True)`.

    Returns:
        The last state, a float tensor of shape `(batch_size, units)`; zeros for a sequence
        without an unmasked step.

    Example:

    ```python
    ids = np.array([[0, 0, 5, 7], [3, 9, 5, 7]])  # Left-padded; 0 = padding.
    words = keras.layers.Embedding(10, 8, mask_zero=True)(ids)
    state = keras_adahan.layers.MaskedGRU(8)(words)  # (2, 8); row 0 read 2 words.
    ```

    Reference:
     - PyTorch-AdaHAN (gnouhp), `models.py`: `EncoderRNN`.
     - [`torch.nn.GRU`](https://pytorch.org/docs/stable/generated/torch.nn.GRU.html).
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = positive_int("units", units)
        self.supports_masking = True

    def build(self, inputs_shape, mask_shape=None):
        if inputs_shape[1] is None:
            raise ValueError(
                f"`MaskedGRU` needs a static number of steps, received input shape {inputs_shape}"
            )
        self.kernel = self.add_weight(
            shape=(inputs_shape[-1], 3 * self.units), initializer="glorot_uniform",
            name="kernel",
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, 3 * self.units), initializer="orthogonal",
            name="recurrent_kernel",
        )
        self.bias = self.add_weight(shape=(2, 3 * self.units), initializer="zeros", name="bias")

    def call(self, inputs, mask=None):
        units = self.units
        # Every step's input projection at once: (B, L, E) -> (B, L, 3U).
        projected = ops.matmul(inputs, self.kernel) + self.bias[0]
        state = ops.zeros_like(projected[:, 0, :units])  # (B, U)
        if mask is not None:
            keep = ops.cast(ops.expand_dims(mask, -1), state.dtype)  # (B, L, 1)
        for step in range(inputs.shape[1]):
            x = projected[:, step]  # (B, 3U)
            h = ops.matmul(state, self.recurrent_kernel) + self.bias[1]
            z = ops.sigmoid(x[:, :units] + h[:, :units])
            r = ops.sigmoid(x[:, units:2 * units] + h[:, units:2 * units])
            n = ops.tanh(x[:, 2 * units:] + r * h[:, 2 * units:])
            new_state = z * state + (1.0 - z) * n
            if mask is None:
                state = new_state
            else:  # 0/1: exactly the new state, or exactly the old one.
                state = keep[:, step] * new_state + (1.0 - keep[:, step]) * state
        return state

    def compute_mask(self, inputs, mask=None):
        return None  # One state per sequence: nothing left to mask.

    def compute_output_shape(self, inputs_shape, mask_shape=None):
        return (inputs_shape[0], self.units)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units})
        return config
