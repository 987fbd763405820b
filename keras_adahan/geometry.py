"""Cell geometry: the one place that maps the model's cells to image rectangles.

The image encoder turns an `S x S` image into a `G x G` grid of cells; the `presence` and
`mask` outputs number them row-major, cell `n = i * G + j` (row `i`, column `j`), covering
rows `[edges[i], edges[i+1])` and columns `[edges[j], edges[j+1])` of the image, where
`edges = cell_edges(config)`: around where the encoder's windows are centred, which is the
even split `[i*S/G, (i+1)*S/G)` for the `default` and `clevr` presets but not for strided
layers that pad one side more. Evaluation, plots, export labels, predict overlays and the
LiteRT runner all read the grid from here or from the model (`VQAModel.grid_size`,
`VQAModel.cell_edges`, `VQAModel.cell_boxes()`), never by taking a square root.
"""

import math

import numpy as np

from keras_adahan.layers.arguments import positive_int


def grid_size(config):
    """Side G of the square cell grid for a `ModelConfig`."""
    size = config.image_size
    for window, stride, padding in _windows(config):
        size, _ = _window_layer(size, window, stride, padding)
    return size


def cell_edges(config):
    """Normalized `(G + 1,)` edges of the cells of a `ModelConfig` along either axis.

    Each cell is centred where its encoder's windows are centred in the image (strided
    'same' layers pad the odd pixel after, so a grid's cells may sit off the even split of
    the image; even kernels at stride 1 shift them further, a last centre past the image
    is taken at its last pixel); edges lie halfway between neighbouring centres, the outer
    ones on the image's borders (benchmarks/cell_alignment.py checks this against the
    gradients). `ModelConfig` refuses an encoder whose cells these edges cannot tell apart.
    """
    size, layers = config.image_size, []
    for window, stride, padding in _windows(config):
        size, start = _window_layer(size, window, stride, padding)
        layers.append((stride, start + (window - 1) / 2))
    centres = np.arange(size, dtype=np.float64)  # Output positions, then input ones.
    for stride, offset in reversed(layers):
        centres = stride * centres + offset
    # Pixel i spans [i, i + 1): its centre is i + 0.5.
    centres = np.clip(centres + 0.5, 0.5, config.image_size - 0.5) / config.image_size
    return np.concatenate([[0.0], (centres[:-1] + centres[1:]) / 2, [1.0]])


def even_edges(grid_size):
    """The even split's `(G + 1,)` normalized edges: `j / G`."""
    return np.arange(grid_size + 1) / grid_size


def cell_boxes(grid_size, image_size=None, edges=None):
    """The image rectangle of every cell, in the order of the `presence`/`mask` outputs.

    Args:
        grid_size: int. G.
        image_size: int or `None`. With `None`, boxes are normalized to [0, 1]; with S,
            they are in pixels. Defaults to `None`.
        edges: `(G + 1,)` normalized cell edges (a model's `cell_edges`), or `None` for
            the even split. Defaults to `None`.

    Returns:
        float32 array of shape `(G * G, 4)`: `(ymin, xmin, ymax, xmax)` per cell.
    """
    grid_size = positive_int("grid_size", grid_size)
    low, high = _spans(grid_size, edges)
    edges = np.append(low, high[-1])
    if image_size is not None:
        edges = edges * image_size
    i, j = np.meshgrid(np.arange(grid_size), np.arange(grid_size), indexing="ij")
    i, j = i.reshape(-1), j.reshape(-1)  # Row-major, like the (B, G, G, D) -> (B, N, D) reshape.
    return np.stack([edges[i], edges[j], edges[i + 1], edges[j + 1]], axis=1).astype("float32")


def cell_centres(grid_size, edges=None):
    """Normalized `(y, x)` centres of the cells' boxes, row-major, `(N, 2)`; `edges` as in
    `cell_boxes`."""
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
        edges = even_edges(grid_size)
    edges = np.asarray(edges, dtype=np.float64)
    if edges.shape != (grid_size + 1,) or not np.all(np.diff(edges) > 0):
        raise ValueError(f"`edges` must be {grid_size + 1} increasing values, received {edges}")
    return edges[:-1], edges[1:]


def _windows(config):
    """`(size, stride, padding)` of the image encoder's window layers in order (as
    `model.build_image_encoder` builds them): padding `None` is Keras' 'same', an int pads
    that many zeros on each side (PyTorch's pooling, also what `ConvAveragePool2D` folds)."""
    for index, (kernel, stride) in enumerate(zip(config.conv_kernel_sizes, config.conv_strides)):
        yield kernel, stride, None
        pool = config.pool_sizes[index] if config.pool_sizes else 0
        if pool:
            counts_padding = config.fuse_conv_pool or config.count_pool_padding
            yield pool, config.pool_strides[index], pool // 2 if counts_padding else None


def _window_layer(size, window, stride, padding):
    """`(output size, input position where output 0's window starts)` of one layer."""
    if padding is None:  # 'same': each stride rounds up; the odd padding pixel goes after.
        out = math.ceil(size / stride)
        return out, -(max((out - 1) * stride + window - size, 0) // 2)
    return (size + 2 * padding - window) // stride + 1, -padding
