import numbers

import keras
from keras import ops

from keras_adahan.layers.han_mask import top_cells


def check_adahan_arguments(threshold, min_cells, max_cells, num_cells=None):
    """Validates AdaHAN's arguments; returns them normalized (float, int, int or None).

    Raises a `ValueError` naming the argument and its value. The checks that need the
    number of cells run only when `num_cells` is given.
    """
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
            raise ValueError(
                f"`threshold` must be a float in (0, 1] or None, received {threshold!r}"
            )
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"`threshold` must be in (0, 1], received {threshold}")
        threshold = float(threshold)
    if isinstance(min_cells, bool) or not isinstance(min_cells, numbers.Integral):
        raise ValueError(f"`min_cells` must be an int >= 0, received {min_cells!r}")
    if min_cells < 0:
        raise ValueError(f"`min_cells` must be >= 0, received {min_cells}")
    if max_cells is not None:
        if isinstance(max_cells, bool) or not isinstance(max_cells, numbers.Integral):
            raise ValueError(
                f"`max_cells` must be an int >= 1 or None, received {max_cells!r}"
            )
        if max_cells < max(1, min_cells):
            raise ValueError(
                f"`max_cells` must be >= max(1, min_cells) = {max(1, min_cells)}, "
                f"received {max_cells}"
            )
        max_cells = int(max_cells)
    if num_cells is not None:
        if min_cells > num_cells:
            raise ValueError(
                f"`min_cells` must be in [0, num_cells] = [0, {num_cells}], "
                f"received {min_cells}"
            )
        if max_cells is not None and max_cells > num_cells:
            raise ValueError(
                f"`max_cells` must be in [1, num_cells] = [1, {num_cells}], "
                f"received {max_cells}"
            )
    return threshold, int(min_cells), max_cells


@keras.saving.register_keras_serializable(package="keras_adahan")
class AdaHANMask(keras.layers.Layer):
    """Adaptive hard attention mask of AdaHAN.

    The cells compete through a softmax over their presence; a cell is kept
    when its softmax value reaches `threshold` (`1 / num_cells` by default: a
    cell is kept when it beats the uniform distribution). How many cells are
    kept thus depends on the input. `min_cells` and `max_cells` bound that
    number: when too few (many) cells pass, the `min_cells` (`max_cells`) cells
    of highest presence are kept, the lower cell index winning ties. With the
    default `min_cells=1` an example never keeps zero cells.

    Since the softmax is monotonic, the kept cells are always the top cells by
    presence; the bounds are applied as a union (intersection) with the top
    `min_cells` (`max_cells`) cells, using `top_k` and `one_hot` so the layer
    converts to TFLite builtins. No gradient flows through the selection.

    Args:
        threshold: float or `None`. Softmax value a cell needs to be kept, in
            `(0, 1]`. `None` means `1 / num_cells`. Defaults to `None`.
        min_cells: int. Keep at least this many cells, in `[0, num_cells]`.
            Defaults to `1`.
        max_cells: int or `None`. Keep at most this many cells, in
            `[max(1, min_cells), num_cells]`; `None` sets no ceiling.
            Defaults to `None`.
        **kwargs: other keyword arguments passed to `keras.layers.Layer`,
            including `name`, `dtype` etc.

    Call arguments:
        inputs: float tensor of shape `(batch_size, num_cells)`, the presence
            of every cell. `num_cells` must be known when the layer is built.

    Returns:
        A float tensor of shape `(batch_size, num_cells)`: 1.0 at the kept
        cells, 0.0 elsewhere.

    Example:

    ```python
    presence = np.log(np.array([[0.5, 0.3, 0.1, 0.1]]))  # softmax = itself
    keras_adahan.layers.AdaHANMask()(presence)  # [[1., 1., 0., 0.]]
    keras_adahan.layers.AdaHANMask(threshold=0.4)(presence)  # [[1., 0., 0., 0.]]
    keras_adahan.layers.AdaHANMask(max_cells=1)(presence)  # [[1., 0., 0., 0.]]
    ```

    Reference:
     - [Malinowski et al., 2018](https://arxiv.org/abs/1808.00300), Sec. 3.2.
    """

    def __init__(self, threshold=None, min_cells=1, max_cells=None, **kwargs):
        super().__init__(**kwargs)
        threshold, min_cells, max_cells = check_adahan_arguments(
            threshold, min_cells, max_cells
        )
        self.threshold = threshold
        self.min_cells = int(min_cells)
        self.max_cells = max_cells

    def build(self, inputs_shape):
        num_cells = inputs_shape[-1]
        if num_cells is None:
            raise ValueError(
                "`AdaHANMask` needs a static number of cells, received input shape "
                f"{inputs_shape}"
            )
        check_adahan_arguments(
            self.threshold, self.min_cells, self.max_cells, num_cells
        )

    def call(self, inputs):
        num_cells = inputs.shape[-1]
        threshold = self.threshold if self.threshold is not None else 1.0 / num_cells
        probabilities = ops.softmax(inputs, axis=-1)  # (B, N)
        mask = ops.cast(probabilities >= threshold, self.compute_dtype)
        # The cells passing the threshold are a prefix of the cells sorted by
        # presence, so union/intersection with the top-m cells clamps the count.
        if self.min_cells > 0:
            floor = top_cells(inputs, self.min_cells, num_cells, self.compute_dtype)
            mask = ops.maximum(mask, floor)
        if self.max_cells is not None and self.max_cells < num_cells:
            ceiling = top_cells(inputs, self.max_cells, num_cells, self.compute_dtype)
            mask = ops.minimum(mask, ceiling)
        return mask

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "threshold": self.threshold,
                "min_cells": self.min_cells,
                "max_cells": self.max_cells,
            }
        )
        return config
