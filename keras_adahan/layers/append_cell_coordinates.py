import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_adahan")
class AppendCellCoordinates(keras.layers.Layer):
    """Appends each cell's (row, column) on the grid, in [-1, 1], to its features.

    Relation networks give every object its coordinates (Santoro et al., 2017). Hard
    attention gathers a few cells, and sum pooling adds them up: either way the features
    alone no longer say where a cell was, and "closest", "furthest", "on the left" need it.

    Args:
        **kwargs: keyword arguments passed to `keras.layers.Layer`, including
            `name`, `dtype` etc.

    Call arguments:
        features: float tensor of shape `(batch_size, num_cells, channels)`, the
            cells of a square grid in row-major order.

    Returns:
        A float tensor of shape `(batch_size, num_cells, channels + 2)`: the features,
        then the row and the column coordinate.

    Example:

    ```python
    features = np.zeros((1, 4, 3))  # A 2x2 grid.
    keras_adahan.layers.AppendCellCoordinates()(features)[0, :, 3:]
    # [[-1, -1], [-1, 1], [1, -1], [1, 1]]
    ```

    Reference:
     - [Santoro et al., 2017](https://arxiv.org/abs/1706.01427), Sec. 4.
    """

    def call(self, features):
        num_cells = features.shape[1]
        grid = round(num_cells**0.5) if num_cells is not None else 0
        if grid * grid != num_cells or num_cells == 0:
            raise ValueError(
                f"`features` must hold the cells of a square grid, received {num_cells} cells"
            )
        steps = ops.linspace(-1.0, 1.0, grid) if grid > 1 else ops.zeros((1,))
        rows = ops.repeat(steps, grid)  # (N,), row-major: the row changes slowest.
        columns = ops.tile(steps, (grid,))
        coordinates = ops.cast(ops.stack([rows, columns], axis=-1), features.dtype)  # (N, 2)
        coordinates = ops.broadcast_to(
            coordinates[None], (ops.shape(features)[0], num_cells, 2)
        )
        return ops.concatenate([features, coordinates], axis=-1)

    def compute_output_shape(self, features_shape):
        return tuple(features_shape[:-1]) + (features_shape[-1] + 2,)
