import keras


@keras.saving.register_keras_serializable(package="keras_adahan")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` that trains with TensorFlow's fused kernel.

    Keras 3 normalizes a training batch with separate ops (moments, then the affine
    transform); TensorFlow's fused kernel does both passes in one op each, which is
    what makes the default preset's batch norms cheap to train on a CPU
    (docs/speed.md). This layer computes the same function and updates the
    moving statistics the same way, through the fused kernel, where it applies: the
    TensorFlow backend, training, a float32 or mixed_bfloat16 policy, inputs of rank 4
    normalized over their last axis, no mask, no renorm, not synchronized. Everywhere
    else (inference, export, other backends) it is `keras.layers.BatchNormalization`.
    Its weights are the same, and so is its class name, which Keras' weights files name a
    layer by: a model saved with Keras' batch norm loads into this one and back.

    Args:
        **kwargs: the arguments of `keras.layers.BatchNormalization`.

    Example:

    ```python
    x = BatchNormalization(momentum=0.9)(np.zeros((2, 8, 8, 16)), training=True)
    ```
    """

    def call(self, inputs, training=None, mask=None):
        if not self._fused_applies(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        gamma = self.gamma if self.scale else tf.ones(inputs.shape[-1])
        beta = self.beta if self.center else tf.zeros(inputs.shape[-1])
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True
        )
        # The fused kernel returns the unbiased batch variance (n / (n - 1) times the one it
        # normalizes with); Keras averages the biased one.
        count = tf.cast(tf.size(inputs, out_type=tf.int64), tf.float32) / inputs.shape[-1]
        variance = variance * (count - 1.0) / count
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + variance * (1.0 - self.momentum)
        )
        return outputs

    def _fused_applies(self, inputs, training, mask):
        return (
            keras.backend.backend() == "tensorflow"
            and training
            and self.trainable
            and mask is None
            and not self.renorm
            and not self.synchronized
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            # bfloat16 (`--dtype mixed_bfloat16`): the kernel normalizes in float32 and
            # returns bfloat16, as Keras' layer does. Its weights must be float32.
            and keras.backend.standardize_dtype(inputs.dtype) == self.compute_dtype
            and self.compute_dtype in ("float32", "bfloat16")
            and self.variable_dtype == "float32"
        )
