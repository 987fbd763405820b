"""Cell geometry: the one place that maps the model's cells to image rectangles.

The image encoder turns an `S x S` image into a `G x G` grid of cells; the `presence` and
`mask` outputs number them row-major, cell `n = i * G + j` (row `i`, column `j`), covering
the pixels `[i*S/G, (i+1)*S/G) x [j*S/G, (j+1)*S/G)`. Evaluation, plots, export labels,
predict overlays and the LiteRT runner all read the grid from here or from the model
(`VQAModel.grid_size`, `VQAModel.cell_boxes()`), never by taking a square root.
"""

import math

import numpy as np

from keras_adahan.layers.arguments import positive_int


def grid_size(config):
    """Side G of the square cell grid for a `ModelConfig` ('same' padding: each stride
    rounds up)."""
    size = config.image_size
    for index, stride in enumerate(config.conv_strides):
        size = math.ceil(size / stride)
        if config.pool_sizes and config.pool_sizes[index]:
            size = math.ceil(size / config.pool_strides[index])
    return size


def cell_boxes(grid_size, image_size=None):
    """The image rectangle of every cell, in the order of the `presence`/`mask` outputs.

    Args:
        grid_size: int. G.
        image_size: int or `None`. With `None`, boxes are normalized to [0, 1]; with S,
            they are in pixels. Defaults to `None`.

    Returns:
        float32 array of shape `(G * G, 4)`: `(ymin, xmin, ymax, xmax)` per cell.
    """
    grid_size = positive_int("grid_size", grid_size)
    edges = np.arange(grid_size + 1, dtype=np.float64) / grid_size
    if image_size is not None:
        edges = edges * image_size
    i, j = np.meshgrid(np.arange(grid_size), np.arange(grid_size), indexing="ij")
    i, j = i.reshape(-1), j.reshape(-1)  # Row-major, like the (B, G, G, D) -> (B, N, D) reshape.
    return np.stack([edges[i], edges[j], edges[i + 1], edges[j + 1]], axis=1).astype("float32")


def cell_centres(grid_size, edges=None):
    """Normalized `(y, x)` centres of the cells, row-major, `(N, 2)`; `edges`, `(G + 1,)`
    normalized and increasing, replace the even split's (benchmarks/cell_alignment.py)."""
    if edges is None:
        centres = (np.arange(grid_size) + 0.5) / grid_size
    else:
        low, high = _spans(grid_size, edges)
        centres = (low + high) / 2
    y, x = np.meshgrid(centres, centres, indexing="ij")
    return np.stack([y.ravel(), x.ravel()], axis=1)


def top_kept_cell(presence, mask):
    """Index of the kept cell (`mask > 0.5`) with the highest presence, over the last axis:
    the cell grounding is measured on and plots and overlays mark."""
    return np.argmax(np.where(np.asarray(mask) > 0.5, presence, -np.inf), axis=-1)


def box_overlap_shares(grid_size, boxes, edges=None):
    """Share of each cell's area inside each box: `(Q, N)` for `(Q, 4)` normalized
    `(ymin, xmin, ymax, xmax)` boxes; `edges` as in `cell_centres`."""
    low, high = _spans(grid_size, edges)
    ymin, xmin, ymax, xmax = np.asarray(boxes).T
    overlap_y = np.clip(np.minimum(high, ymax[:, None]) - np.maximum(low, ymin[:, None]), 0, None)
    overlap_x = np.clip(np.minimum(high, xmax[:, None]) - np.maximum(low, xmin[:, None]), 0, None)
    shares_y, shares_x = overlap_y / (high - low), overlap_x / (high - low)
    return (shares_y[:, :, None] * shares_x[:, None, :]).reshape(len(ymin), -1)


def _spans(grid_size, edges):
    """`(low, high)`, `(G,)` each: where each cell starts and ends along an axis."""
    if edges is None:
        # j / G + 1 / G, not (j + 1) / G: the sums the grounding and coverage figures in the
        # docs were measured with (an object's edge at a cell border, in float64, can touch
        # the cell before it by 1e-16 one way and not the other).
        low = np.arange(grid_size) / grid_size
        return low, low + 1.0 / grid_size
    edges = np.asarray(edges, dtype=np.float64)
    if edges.shape != (grid_size + 1,) or not np.all(np.diff(edges) > 0):
        raise ValueError(f"`edges` must be {grid_size + 1} increasing values, received {edges}")
    return edges[:-1], edges[1:]
