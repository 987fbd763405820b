"""Where does each cell of the image encoder look, against the box the project gives it?

    python benchmarks/cell_alignment.py                      # every preset, untrained (seed 0)
    python benchmarks/cell_alignment.py --run RUN [--data_dir DIR]

Evaluation, plots, overlays and export labels give each cell the box around where the
encoder's windows are centred (`keras_adahan.geometry.cell_edges`, worked out from the
layers' sizes, strides and padding: strided 'same' layers pad more on one side). This
measures where a cell looks: the centroid of |d cell / d pixel| (the cell's channels
summed, over 4 random images), in pixels, for each cell of the grid's diagonal, rows and
columns averaged; it prints the line fitted to the inner half of the cells against the
boxes' centres and the even split's, and the middle cell's offsets in cells. With --run,
for that run's encoder, then its test split's grounding (as `keras_adahan.evaluate`
computes it) with the model's boxes, the even split's, and boxes around the fitted centres
(edges halfway between them, the outer ones at the image's borders).
"""

import numpy as np

from keras_adahan import cli


def centroids(encoder, image_size, grid_size, images=4, seed=0):
    """`(rows, columns)`: the pixel centroids of each diagonal cell's gradient, `(G,)` each."""
    import tensorflow as tf

    pixels = tf.Variable(tf.random.stateless_uniform(
        (images, image_size, image_size, 3), (seed, 0), 0, 255))
    position = np.arange(image_size) + 0.5  # Pixel centres.
    rows, columns = [], []
    for j in range(grid_size):
        with tf.GradientTape() as tape:
            cells = tf.reshape(encoder(pixels), (images, grid_size, grid_size, -1))
            total = tf.reduce_sum(cells[:, j, j])
        weight = tf.reduce_sum(tf.abs(tape.gradient(total, pixels)), axis=(0, 3)).numpy()
        rows.append((position * weight.sum(1)).sum() / weight.sum())
        columns.append((position * weight.sum(0)).sum() / weight.sum())
    return np.array(rows), np.array(columns)


def _line(step, start):
    """`step j + start`, as printed."""
    return f"{step:.1f} j {'-' if start < 0 else '+'} {abs(start):.1f}"


def report(name, encoder, image_size, edges):
    """Prints where the cells look against their boxes (`edges`, the model's `cell_edges`)
    and the even split's; returns normalized edges halfway between the centres that a line
    fitted to the inner cells gives (a border cell's gradient leans inwards: part of its
    field lies outside the image), or `None` with too few cells to fit."""
    grid_size = len(edges) - 1
    rows, columns = centroids(encoder, image_size, grid_size)
    looks = (rows + columns) / 2
    cell = np.arange(grid_size)
    inner = cell[grid_size // 4:grid_size - grid_size // 4]
    if len(inner) < 2:
        print(f"{name}: {grid_size}x{grid_size} cells, too few to fit")
        return None
    step, start = np.polyfit(inner, looks[inner], 1)
    boxes = (edges[:-1] + edges[1:]) / 2 * image_size
    box_step, box_start = np.polyfit(inner, boxes[inner], 1)
    even_step = image_size / grid_size
    middle = grid_size // 2
    print(f"{name}: {image_size} px, {grid_size}x{grid_size} cells: cell j looks at "
          f"{_line(step, start)} px (its boxes' centres: {_line(box_step, box_start)}; the even "
          f"split's: {_line(even_step, even_step / 2)}); middle cell {middle}: "
          f"{looks[middle]:.1f} px, {(looks[middle] - boxes[middle]) / even_step:+.2f} cells "
          f"from its box's centre, {(looks[middle] - (middle + 0.5) * even_step) / even_step:+.2f}"
          " from the even split's")
    centres = step * cell + start
    fitted = np.concatenate([[0], (centres[:-1] + centres[1:]) / 2, [image_size]])
    return np.clip(fitted, 0, image_size) / image_size


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=cli.run_path, default=None,
                        help="a run folder (or its model.keras): its encoder, and its "
                             "grounding both ways")
    parser.add_argument("--data_dir", type=cli.folder_path, default=None,
                        help="with --run: where its dataset is built (default: the run's)")
    args = parser.parse_args(argv)
    if args.data_dir and not args.run:
        parser.error("--data_dir is read with --run only")
    import keras

    from keras_adahan.model import VQAModel
    from keras_adahan.presets import PRESETS

    if not args.run:
        for name, config in PRESETS.items():
            keras.utils.set_random_seed(0)  # Untrained weights sway the centroids a little.
            model = VQAModel(config)
            report(name, model.get_layer("image_encoder"), config.image_size, model.cell_edges)
        return

    from keras_adahan import data
    from keras_adahan import evaluate
    from keras_adahan import geometry
    from keras_adahan import run_files

    run = run_files.load_run(args.run)
    dataset = data.run_dataset(run, args.data_dir)  # Refused before measuring.
    edges = report(args.run, run.model.get_layer("image_encoder"), run.model.config.image_size,
                   run.model.cell_edges)
    result = evaluate.evaluate(run.model, dataset, run.vocabulary)
    arrays, outputs = result.arrays, result.outputs
    grounded = evaluate.grounded_questions(arrays, dataset.type_names, dataset.answer_names,
                                           dataset.spec)
    if not grounded.any():
        raise cli.UserError(f"{dataset.spec.title}'s test split has no question with a "
                            "target box: no grounding to compare")
    print(f"grounding of {grounded.sum():,} test questions (%): top cell's centre on the "
          "target, top cell touches it, a kept cell touches it, kept area on it")
    grid_size = run.model.grid_size
    geometries = [("the model's boxes", run.model.cell_edges),
                  ("even boxes", geometry.even_edges(grid_size))]
    if edges is not None:
        geometries.append(("boxes around the centroids", edges))
    for label, cell_edges in geometries:
        top_on, area_share, top_touches, target_kept = evaluate.grounding(
            outputs["presence"][grounded], outputs["mask"][grounded], arrays.boxes[grounded],
            cell_edges)
        print(f"  {label:<27} " + ", ".join(
            f"{100 * m.mean():.1f}" for m in (top_on, top_touches, target_kept, area_share)))


if __name__ == "__main__":
    cli.run(main)
