"""Writes dummy_data/: a tiny CLEVR in CLEVR_v1.0's exact file layout, for tests.

    python datasets/clevr/make_dummy_data.py

    dummy_data/CLEVR_v1.0/images/{train,val,test}/CLEVR_{split}_{index:06d}.png
    dummy_data/CLEVR_v1.0/questions/CLEVR_{split}_questions.json   (test: no answers)
    dummy_data/CLEVR_v1.0/scenes/CLEVR_{train,val}_scenes.json     (CLEVR has none for test)

Each image shows 2-4 flat objects (a square for a cube, a disc for a sphere, a narrow
rectangle for a cylinder) on grey; each has 2-4 questions whose answers follow from its
scene, of CLEVR's answer kinds. Deterministic.
"""

import json
import os
import random

from PIL import Image
from PIL import ImageDraw

SIZE = (48, 32)  # CLEVR's 480 x 320, a tenth.
SPLITS = {"train": 6, "val": 3, "test": 3}
COLORS = {"red": (173, 35, 35), "blue": (42, 75, 215), "green": (29, 105, 20),
          "yellow": (255, 238, 51), "gray": (87, 87, 87), "cyan": (41, 208, 208)}
SHAPES = ("cube", "sphere", "cylinder")
FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dummy_data", "CLEVR_v1.0")


def scene(rng):
    objects = []
    for slot in rng.sample(range(4), rng.randint(2, 4)):
        objects.append({
            "color": rng.choice(sorted(COLORS)), "shape": rng.choice(SHAPES),
            "size": rng.choice(("small", "large")), "material": rng.choice(("rubber", "metal")),
            "3d_coords": [slot - 1.5, 0.0, 0.35], "rotation": 0.0,
            "pixel_coords": [6 + 12 * slot, 16, 10.0],
        })
    return objects


def draw(objects):
    image = Image.new("RGB", SIZE, (128, 128, 128))
    pen = ImageDraw.Draw(image)
    for o in objects:
        x, y = o["pixel_coords"][:2]
        r = 5 if o["size"] == "large" else 3
        box = [x - r, y - r, x + r, y + r]
        if o["shape"] == "sphere":
            pen.ellipse(box, fill=COLORS[o["color"]])
        elif o["shape"] == "cube":
            pen.rectangle(box, fill=COLORS[o["color"]])
        else:
            pen.rectangle([x - r // 2, y - r, x + r // 2, y + r], fill=COLORS[o["color"]])
    return image


def questions(objects, rng):
    first = objects[0]
    asked = [
        (f"How many {first['shape']}s are there?",
         str(sum(o["shape"] == first["shape"] for o in objects))),
        (f"What color is the {first['size']} {first['shape']}?", first["color"]),
        ("Is there a red thing?", "yes" if any(o["color"] == "red" for o in objects) else "no"),
        (f"What is the {first['color']} thing made of?", first["material"]),
    ]
    return asked[: rng.randint(2, 4)]


def main():
    rng = random.Random(0)
    for split, count in SPLITS.items():
        os.makedirs(os.path.join(FOLDER, "images", split), exist_ok=True)
        os.makedirs(os.path.join(FOLDER, "questions"), exist_ok=True)
        os.makedirs(os.path.join(FOLDER, "scenes"), exist_ok=True)
        all_questions, scenes = [], []
        for index in range(count):
            name = f"CLEVR_{split}_{index:06d}.png"
            objects = scene(rng)
            draw(objects).save(os.path.join(FOLDER, "images", split, name))
            scenes.append({"image_index": index, "image_filename": name, "split": split,
                           "objects": objects})
            for question, answer in questions(objects, rng):
                entry = {"image_index": index, "image_filename": name, "split": split,
                         "question": question, "question_index": len(all_questions)}
                if split != "test":  # CLEVR publishes no test answers.
                    entry["answer"] = answer
                all_questions.append(entry)
        with open(os.path.join(FOLDER, "questions", f"CLEVR_{split}_questions.json"), "w") as f:
            json.dump({"info": {"split": split}, "questions": all_questions}, f, indent=1)
        if split != "test":
            with open(os.path.join(FOLDER, "scenes", f"CLEVR_{split}_scenes.json"), "w") as f:
                json.dump({"info": {"split": split}, "scenes": scenes}, f, indent=1)


if __name__ == "__main__":
    main()
