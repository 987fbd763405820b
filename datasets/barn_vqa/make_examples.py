"""Writes examples.png: four classic and four randomized training scenes with their answers.

Each question's answer box is outlined in the colour of its caption line (count questions
are not outlined: their box is the union of the counted animals).

Example:

```
python datasets/barn_vqa/make_examples.py   # writes datasets/barn_vqa/examples.png
```
"""

import pathlib

import numpy as np
from PIL import Image
from PIL import ImageDraw

# Absolute: this file runs as a script, where a relative import has no package.
from keras_adahan.datasets.barn_vqa import layout, scene_config

_COLOURS = {
    "roof": (255, 0, 255),
    "front": (0, 90, 255),
    "hay": (255, 120, 0),
    "hay_left": (255, 120, 0),
    "hay_right": (0, 200, 200),
    "count": (0, 0, 0),
}
_CAPTION = 64  # pixels of caption below each image


def example_grid(configs=("classic", "randomized"), per_row=4):
    """Returns a PIL image: one row of `per_row` training scenes per config."""
    size = max(scene_config.get_config(name).image_size for name in configs)
    grid = Image.new("RGB", (per_row * size, len(configs) * (size + _CAPTION)), "white")
    draw = ImageDraw.Draw(grid)
    for row, name in enumerate(configs):
        config = scene_config.get_config(name)
        for col in range(per_row):
            scene = layout.render_scene(config, "train", col)
            left, top = col * size, row * (size + _CAPTION)
            grid.paste(Image.fromarray(scene.image), (left, top))
            for line, question in enumerate(scene.questions):
                colour = _COLOURS[question.type]
                if question.type != "count":
                    ymin, xmin, ymax, xmax = np.array(question.box) * config.image_size
                    draw.rectangle(
                        [left + xmin - 1, top + ymin - 1, left + xmax, top + ymax],
                        outline=colour,
                    )
                text = f"{question.type}: {question.answer}"
                if question.type == "count":
                    text = f"{question.text} {question.answer}"
                draw.text((left + 4, top + size + 2 + 12 * line), text, fill=colour)
    return grid


if __name__ == "__main__":
    path = pathlib.Path(__file__).with_name("examples.png")
    example_grid().save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
