"""PNG figures of a run: learning curves, attention over test images, cells kept."""

import matplotlib

matplotlib.use("Agg")  # Files only: no screen on training machines.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from keras_adahan import geometry  # noqa: E402
from keras_adahan import run_files  # noqa: E402


def plot_history(history, path):
    """Training and validation accuracy and loss per epoch, from a Keras history dict."""
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric in zip(axes, ("accuracy", "loss")):
        ax.plot(epochs, history[metric], "o-", label="train")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], "o-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with run_files.atomic_path(path) as tmp:  # Never a half-written PNG.
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def plot_attention(images, questions, answers, predictions, presence, mask, cell_edges, path):
    """One row per example: the image with its kept cells outlined, and a presence map.

    Kept cells are outlined in yellow, the one with the highest presence in red; each cell
    is drawn over the pixels it covers (`keras_adahan.geometry.cell_boxes`).

    Args:
        images: `(E, S, S, 3)` pixel values. questions, answers, predictions: E strings.
        presence, mask: `(E, N)`, the `N = G * G` cells in row-major order.
        cell_edges: `(G + 1,)` normalized cell edges, the model's (`model.cell_edges`).
    """
    num = len(images)
    grid = len(cell_edges) - 1
    size = images.shape[1]
    boxes = geometry.cell_boxes(grid, size, cell_edges)  # (N, 4) pixels
    fig, axes = plt.subplots(num, 2, figsize=(7, 3.3 * num), squeeze=False)
    for row in range(num):
        ax = axes[row, 0]
        ax.imshow(images[row].astype(np.uint8))
        kept = mask[row] > 0.5
        # Dim what the model dropped, outline what it kept.
        for ymin, xmin, ymax, xmax in boxes[~kept]:
            ax.add_patch(plt.Rectangle((xmin, ymin), xmax - xmin, ymax - ymin,
                                       facecolor="black", alpha=0.55, linewidth=0))
        for ymin, xmin, ymax, xmax in boxes[kept]:
            ax.add_patch(plt.Rectangle((xmin, ymin), xmax - xmin, ymax - ymin, fill=False,
                                       edgecolor="yellow", linewidth=1.2))
        # The kept cell with the highest presence: what grounding is measured on.
        ymin, xmin, ymax, xmax = boxes[geometry.top_kept_cell(presence[row], mask[row])]
        ax.add_patch(plt.Rectangle((xmin, ymin), xmax - xmin, ymax - ymin,
                                   fill=False, edgecolor="red", linewidth=2))
        verdict = "right" if predictions[row] == answers[row] else "WRONG"
        ax.set_title(f"{questions[row]}\nanswer {answers[row]}, predicted "
                     f"{predictions[row]} ({verdict})", fontsize=8)
        ax.axis("off")
        ax = axes[row, 1]
        heat = ax.imshow(presence[row].reshape(grid, grid), cmap="magma")
        ax.set_title(f"presence; {int(kept.sum())} of {grid * grid} cells kept", fontsize=8)
        ax.axis("off")
        fig.colorbar(heat, ax=ax, fraction=0.046)
    fig.tight_layout()
    with run_files.atomic_path(path) as tmp:  # Never a half-written PNG.
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def plot_kept_cells(kept_counts, num_cells, path, types=None, type_names=()):
    """Histogram of how many cells each question kept (AdaHAN's adaptive budget); with
    `types` ((Q,) labels into `type_names`), one outline per question type, as a share of
    that type's questions, so the types can be compared."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    low, high = int(kept_counts.min()), int(kept_counts.max())
    bins = np.arange(low, high + 2) - 0.5 if high - low < 50 else 50
    if types is None:
        ax.hist(kept_counts, bins=bins)
        ax.set_ylabel("questions")
    else:
        for index, name in enumerate(type_names):
            counts = kept_counts[types == index]
            if len(counts):
                ax.hist(counts, bins=bins, histtype="step", linewidth=1.5, label=name,
                        weights=np.full(len(counts), 1 / len(counts)))
        ax.set_ylabel("share of the type's questions")
        ax.legend(fontsize="small")
    ax.set_xlabel(f"cells kept (of {num_cells})")
    ax.set_title("cells kept per question")
    fig.tight_layout()
    with run_files.atomic_path(path) as tmp:  # Never a half-written PNG.
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
