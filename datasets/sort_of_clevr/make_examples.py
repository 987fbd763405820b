"""Writes examples.png: the first four training scenes of sort_of_clevr/default, each with
two of its questions (one non-relational, one relational) and the named object's box.

    python datasets/sort_of_clevr/make_examples.py
"""

import os
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from keras_adahan.datasets.sort_of_clevr import scenes  # noqa: E402


def main():
    config = scenes.CONFIGS["default"]
    fig, axes = plt.subplots(2, 2, figsize=(7, 8))
    for index, ax in enumerate(axes.flat):
        scene = scenes.render_scene(config, "train", index)
        ax.imshow(scene.image, interpolation="nearest")
        lines = []
        for q, color in ((scene.questions[0], "black"), (scene.questions[10], "purple")):
            ymin, xmin, ymax, xmax = [v * config.image_size - 0.5 for v in q.box]
            ax.add_patch(plt.Rectangle((xmin, ymin), xmax - xmin, ymax - ymin, fill=False,
                                       edgecolor=color, linewidth=1.5))
            lines.append(textwrap.fill(f"{q.text} {q.answer}", 48))
        ax.set_title("\n".join(lines), fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(os.path.join(os.path.dirname(__file__), "examples.png"), dpi=90)


if __name__ == "__main__":
    main()
