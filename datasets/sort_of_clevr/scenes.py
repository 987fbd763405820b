"""Sort-of-CLEVR scenes: six coloured squares and circles, twenty questions, drawn with Pillow.

As the benchmark is defined by Santoro et al. (2017) and the public generator of
kimhc6028/relational-networks: a white image holding one object of each of the six colours,
each a square or a circle, none overlapping; per image 10 non-relational questions (the shape
of the X object; is it on the left; is it on the top) and 10 relational ones (the shape of the
object closest to X; of the object furthest from X; how many objects share X's shape), X and
the subtype drawn at random for each question. Every scene is a function of (config, split,
index) alone, so a dataset rebuilds byte for byte.

Geometry scales with the image: an object covers its centre pixel and `object_radius`
pixels on each side (5 at 75 px: 11 px, as the public generator's), and a gap of at least one
pixel separates any two. "Left" and "top" compare the object's centre with the image's
centre. Scenes where "closest" or "furthest" would tie are drawn again, so every answer is
unique.
"""

import dataclasses
import hashlib

import numpy as np
from PIL import Image
from PIL import ImageDraw

COLORS = {  # The public generator's colours.
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "orange": (255, 156, 0),
    "gray": (128, 128, 128),
    "yellow": (255, 255, 0),
}
SHAPES = ("square", "circle")
ANSWERS = ("yes", "no", "square", "circle", "1", "2", "3", "4", "5", "6")
NON_RELATIONAL = ("shape", "left", "top")
RELATIONAL = ("closest", "furthest", "count")
QUESTION_TYPES = NON_RELATIONAL + RELATIONAL
QUESTIONS_PER_IMAGE = 20  # 10 non-relational, then 10 relational.
SPLITS = ("train", "validation", "test")
TEMPLATES = {
    "shape": "What is the shape of the {} object?",
    "left": "Is the {} object on the left?",
    "top": "Is the {} object on the top?",
    "closest": "What is the shape of the object closest to the {} object?",
    "furthest": "What is the shape of the object furthest from the {} object?",
    "count": "How many objects have the same shape as the {} object?",
}


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """One Sort-of-CLEVR config: image side and images per split."""

    description: str
    image_size: int = 75
    train: int = 9_800
    validation: int = 200
    test: int = 200

    def num_examples(self, split):
        return getattr(self, split)

    @property
    def object_radius(self):
        """Pixels on each side of an object's centre pixel: 5 at 75 px, 9 at 128 px."""
        return max(2, round(self.image_size / 15))


CONFIGS = {
    "default": SceneConfig(
        "75x75 images as in the public generators; 9,800 train, 200 validation (ours), "
        "200 test images of 20 questions."),
    "large": SceneConfig(
        "128x128 images: a grid with enough cells that hard attention has cells to drop."
        " Same splits.", image_size=128),
    # Scenes depend only on (split, index, image size): the first 9,800 train images and
    # the validation and test images are default's, so test figures compare directly.
    "more_scenes": SceneConfig(
        "75x75 images, 98,000 train images (default's 9,800 and 88,200 more); default's "
        "validation and test images.", train=98_000),
    "tiny": SceneConfig("For tests: 8 train, 4 validation, 4 test images at 75x75.",
                        train=8, validation=4, test=4),
}


@dataclasses.dataclass(frozen=True)
class SceneObject:
    color: str
    shape: str
    center: tuple  # (x, y): the centre pixel.
    box: tuple  # Normalized (ymin, xmin, ymax, xmax).


@dataclasses.dataclass(frozen=True)
class Question:
    text: str
    answer: str
    type: str
    color: str  # The X object's colour.
    box: tuple  # The X object's box: the object the question names.


@dataclasses.dataclass(frozen=True)
class Scene:
    image: np.ndarray  # uint8 (S, S, 3)
    objects: tuple
    questions: tuple


def _rng(split, index, image_size):
    # Seeded by name, not by Python's hash (randomized per process).
    digest = hashlib.sha256(f"sort_of_clevr/{image_size}/{split}/{index}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _place_objects(rng, config):
    radius, side = config.object_radius, config.image_size
    while True:
        centers = []
        while len(centers) < len(COLORS):
            center = rng.integers(radius, side - radius, size=2)  # The object fits.
            # A gap of at least one pixel between any two objects' squares.
            if all(np.abs(center - c).max() >= 2 * radius + 2 for c in centers):
                centers.append(center)
        centers = np.array(centers)
        squared = ((centers[:, None, :] - centers[None, :, :]) ** 2).sum(-1)  # Exact ints.
        # Every object's nearest and furthest other object must be unique.
        others = np.sort(squared, axis=1)[:, 1:]  # Drop the zero self-distance.
        if not ((others[:, 0] == others[:, 1]) | (others[:, -1] == others[:, -2])).any():
            return centers, squared


def render_scene(config, split, index):
    """The `Scene` of image `index` of `split` of `config` (a `SceneConfig`)."""
    rng = _rng(split, index, config.image_size)
    radius, side = config.object_radius, config.image_size
    centers, distances = _place_objects(rng, config)
    shapes = [SHAPES[s] for s in rng.integers(0, 2, size=len(COLORS))]

    image = Image.new("RGB", (side, side), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    objects = []
    for color, shape, (x, y) in zip(COLORS, shapes, centers.tolist()):
        corners = (x - radius, y - radius, x + radius, y + radius)  # Inclusive pixels.
        if shape == "square":
            draw.rectangle(corners, fill=COLORS[color])
        else:
            draw.ellipse(corners, fill=COLORS[color])
        box = (y - radius, x - radius, y + radius + 1, x + radius + 1)  # Pixel edges.
        objects.append(SceneObject(color, shape, (x, y), tuple(v / side for v in box)))

    questions = []
    for subtypes in (NON_RELATIONAL, RELATIONAL):
        for _ in range(QUESTIONS_PER_IMAGE // 2):
            named = int(rng.integers(len(COLORS)))
            subtype = subtypes[int(rng.integers(len(subtypes)))]
            questions.append(_question(objects, distances, named, subtype, side))
    return Scene(np.asarray(image, dtype=np.uint8), tuple(objects), tuple(questions))


def _question(objects, distances, named, subtype, side):
    x_object = objects[named]
    if subtype == "shape":
        answer = x_object.shape
    elif subtype == "left":
        answer = "yes" if x_object.center[0] < side / 2 else "no"
    elif subtype == "top":
        answer = "yes" if x_object.center[1] < side / 2 else "no"
    elif subtype in ("closest", "furthest"):
        row = distances[named].astype(np.float64)
        row[named] = np.inf if subtype == "closest" else -np.inf
        other = int(np.argmin(row) if subtype == "closest" else np.argmax(row))
        answer = objects[other].shape
    else:  # count: X itself included, as in the public generator.
        answer = str(sum(o.shape == x_object.shape for o in objects))
    text = TEMPLATES[subtype].format(x_object.color)
    return Question(text, answer, subtype, x_object.color, x_object.box)
