"""A user's own farm scenes, drawn by another renderer and saved as JPEG: does a run on
that folder reach barn_vqa/classic's accuracy in the default epochs?

    python benchmarks/folder_farm.py --folder /tmp/farm            # draw, then train
    python benchmarks/folder_farm.py --folder /tmp/farm --draw_only

The renderer here shares nothing with datasets/barn_vqa: flat shapes in other colours and
proportions (a red barn with a triangular roof, a round hay bale, animals as ellipses with
heads and legs), the barn anywhere on the left half, JPEG at quality 90. Each image asks
classic's three questions (on the roof, in front of the barn, near the hay), with the
animal's box. Then it trains the default preset on `--dataset folder:FOLDER` with the
trainer's own defaults and prints its test figures.
"""

import argparse
import json
import os
import random
import subprocess
import sys

from PIL import Image
from PIL import ImageDraw

SIZE = 256
ANIMALS = {  # name: (body colour, body width, body height) in pixels
    "chicken": ((245, 245, 235), 18, 16),
    "sheep": ((215, 215, 205), 34, 24),
    "cow": ((60, 45, 40), 46, 30),
    "pig": ((240, 160, 170), 34, 22),
}
QUESTIONS = {
    "roof": "What animal is on top of the roof of the barn?",
    "front": "What animal is near the front of the barn?",
    "hay": "What animal is near the hay?",
}
SPLITS = {"train": 10000, "validation": 1000, "test": 1000}


def draw_animal(pen, name, x, y):
    """An animal standing with its feet at (x, y); returns its box (x0, y0, x1, y1)."""
    colour, width, height = ANIMALS[name]
    body = (x - width // 2, y - height - 6, x + width // 2, y - 6)
    pen.ellipse(body, fill=colour, outline=(30, 30, 30))
    head = (body[2] - 4, body[1] - 8, body[2] + 8, body[1] + 6)
    pen.ellipse(head, fill=colour, outline=(30, 30, 30))
    for leg in (body[0] + 5, body[2] - 7):
        pen.rectangle((leg, y - 8, leg + 2, y), fill=(30, 30, 30))
    return (body[0], head[1], head[2], y)


def scene(rng):
    image = Image.new("RGB", (SIZE, SIZE), (150, 200, 235))
    pen = ImageDraw.Draw(image)
    horizon = rng.randint(120, 150)
    pen.rectangle((0, horizon, SIZE, SIZE), fill=(95, 160, 70))
    bx, bw, bh = rng.randint(10, 40), rng.randint(80, 95), rng.randint(60, 75)
    by = horizon + rng.randint(15, 30)  # The barn's foot.
    pen.rectangle((bx, by - bh, bx + bw, by), fill=(170, 40, 35), outline=(60, 20, 20))
    apex = by - bh - rng.randint(25, 35)
    pen.polygon([(bx - 6, by - bh), (bx + bw + 6, by - bh), (bx + bw // 2, apex)],
                fill=(90, 90, 100))
    pen.rectangle((bx + bw // 3, by - bh // 2, bx + 2 * bw // 3, by), fill=(240, 230, 200))
    hx, hy = rng.randint(175, 215), by + rng.randint(-10, 10)  # The hay bale's foot.
    pen.ellipse((hx - 24, hy - 36, hx + 24, hy), fill=(225, 195, 80), outline=(150, 120, 40))
    animals = {place: rng.choice(sorted(ANIMALS)) for place in QUESTIONS}
    boxes = {
        "roof": draw_animal(pen, animals["roof"], bx + bw // 2, apex + 4),
        "front": draw_animal(pen, animals["front"], bx + bw // 2 + rng.randint(-15, 15),
                             by + rng.randint(20, 35)),
        "hay": draw_animal(pen, animals["hay"], hx - rng.choice((1, -1)) * rng.randint(40, 45),
                           hy + rng.randint(-2, 6)),
    }
    return image, animals, boxes


def draw_folder(folder, seed=0):
    rng = random.Random(seed)
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    for split, count in SPLITS.items():
        with open(os.path.join(folder, f"{split}.jsonl"), "w") as f:
            for index in range(count):
                image, animals, boxes = scene(rng)
                name = f"images/{split}_{index:05d}.jpg"
                image.save(os.path.join(folder, name), quality=90)
                for place, question in QUESTIONS.items():
                    x0, y0, x1, y1 = boxes[place]
                    box = [max(y0, 0) / SIZE, max(x0, 0) / SIZE, min(y1, SIZE) / SIZE,
                           min(x1, SIZE) / SIZE]
                    f.write(json.dumps({"image": name, "question": question,
                                        "answer": animals[place], "type": place,
                                        "box": box}) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", required=True, help="where to draw the dataset")
    parser.add_argument("--draw_only", action="store_true")
    parser.add_argument("--data_dir", default=None, help="TFDS data folder for the trainer")
    parser.add_argument("--output_dir", default="runs/folder-farm")
    args = parser.parse_args()
    if not os.path.exists(os.path.join(args.folder, "test.jsonl")):
        if os.path.isdir(args.folder) and os.listdir(args.folder):  # Not ours to overwrite.
            parser.error(f"--folder {args.folder!r} holds other files; give a new or empty "
                         "folder to draw into, or one this script drew")
        draw_folder(args.folder)
        print(f"Drew {sum(SPLITS.values())} scenes into {args.folder}")
    if args.draw_only:
        return
    command = [sys.executable, "-m", "keras_adahan.train", "--dataset",
               f"folder:{os.path.abspath(args.folder)}", "--output_dir", args.output_dir]
    if args.data_dir:
        command += ["--data_dir", args.data_dir]
    subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
