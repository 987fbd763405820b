import numbers

import keras
from keras import ops


def top_cells(presence, count, num_cells, dtype):
    """0/1 mask `(B, N)` of the `count` cells of highest presence; `top_k` puts the lower
    index first among equal values."""
    _, indices = ops.top_k(presence, k=count)  # (B, count)
    return ops.sum(ops.one_hot(indices, num_cells, dtype=dtype), axis=1)  # (B, count, N) -> (B, N)


def check_k(k):
    """Raises a `ValueError` unless `k` is a count (int >= 1) or a share in (0, 1]."""
    if isinstance(k, bool) or not isinstance(k, numbers.Real):
        raise ValueError(
            "`k` must be an int count of cells or a float share of the cells, "
            f"received {k!r}"
        )
    if isinstance(k, numbers.Integral):
        if k < 1:
            raise ValueError(f"`k` must be a count in [1, num_cells] or a share of the cells "
                             f"in (0, 1], received {k}")
    elif not 0.0 < k <= 1.0:
        raise ValueError(
            f"`k` given as a share of the cells must be in (0, 1], received {k}"
        )


def num_kept_cells(k, num_cells):
    """The number of cells HAN keeps out of `num_cells`.

    Args:
        k: int or float. An int is a count of cells, in `[1, num_cells]`; a
            float is a share of the cells, in `(0, 1]`, and keeps
            `max(1, round(k * num_cells))` cells.
        num_cells: int. The number of cells of the grid.

    Returns:
        An int in `[1, num_cells]`.
    """
    check_k(k)
    if isinstance(k, numbers.Integral):
        if k > num_cells:
            raise ValueError(
                f"`k` must be in [1, num_cells] = [1, {num_cells}], received {k}"
            )
        return int(k)
    return max(1, min(num_cells, int(round(k * num_cells))))


@keras.saving.register_keras_serializable(package="keras_adahan")
class HANMask(keras.layers.Layer):
    """Hard attention mask of HAN: keeps the `k` cells of highest presence.

    Exactly `k` cells are kept in every example; ties are broken
    deterministically, the lower cell index wins. The mask is built from the
    `top_k` indices and a sum of one-hot rows, so it converts to TFLite
    builtins (`TOPK_V2`, `ONE_HOT`, `SUM`). No gradient flows through the
    selection: the encoders learn only through the cells that were kept.

    Args:
        k: int or float. An int is the number of cells to keep, in
            `[1, num_cells]`. A float is a share of the cells, in `(0, 1]`:
            `max(1, round(k * num_cells))` cells are kept.
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
    presence = np.array([[0.1, 0.9, 0.5, 0.9]])
    keras_adahan.layers.HANMask(k=2)(presence)  # [[0., 1., 0., 1.]]
    keras_adahan.layers.HANMask(k=0.25)(presence)  # [[0., 1., 0., 0.]]
    ```

    Reference:
     - [Malinowski et al., 2018](https://arxiv.org/abs/1808.00300), Sec. 3.1.
    """

    def __init__(self, k, **kwargs):
        super().__init__(**kwargs)
        check_k(k)
        self.k = k
        self.num_kept = None

    def build(self, inputs_shape):
        num_cells = inputs_shape[-1]
        if num_cells is None:
            raise ValueError(
                "`HANMask` needs a static number of cells, received input shape "
                f"{inputs_shape}"
            )
        self.num_kept = num_kept_cells(self.k, num_cells)

    def call(self, inputs):
        return top_cells(inputs, self.num_kept, inputs.shape[-1], self.compute_dtype)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"k": self.k})
        return config
