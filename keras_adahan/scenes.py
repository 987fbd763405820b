"""Barn scenes for visual question answering: the one place scenes are defined.

A scene is a farmyard drawn with Pillow (no image files): a barn, a hay bale and farm
animals (chicken, sheep, cow, pig), with questions whose answers and grounding boxes come
from the same placement that drew the picture. The `barn_vqa` TFDS dataset, the tests and
the benchmarks all render through `render_scene`.

Two layouts:

- `classic`: the PyTorch-AdaHAN reference's scene. The barn stands at the left, the hay at
  the right; one animal on the barn roof, one in front of the barn, one just left of the
  hay; three questions, one per place.
- `randomized`: barn and hay anywhere (no overlap), distractor animals elsewhere and kept
  clearly away from both, five questions: the four local relations `roof`, `front`,
  `hay_left`, `hay_right` and a `count` question ("How many pigs are there?").

Either layout can leave places empty (`empty_share`, the `*_open` configs): the question
about an empty place is answered "nothing". In the closed configs every place holds one of
the four animals, so a model that recognizes three of them can answer the fourth by
elimination without looking at it; an empty place breaks that shortcut.

Boxes follow the TFDS convention: normalized `(ymin, xmin, ymax, xmax)` in `[0, 1]`,
measured on pixel edges (a sprite covering rows 10..19 of a 100-pixel image has
`ymin=0.10, ymax=0.20`) and tight around the object's own drawn pixels, including pixels
later hidden by an animal standing in front of it.

Example:

```python
from keras_adahan import scenes

config = scenes.get_config("classic")
scene = scenes.render_scene(config, "train", 0)
scene.image.shape  # (256, 256, 3), uint8
[(q.text, q.answer) for q in scene.questions]
```
"""

import dataclasses
import functools

import numpy as np
from PIL import Image
from PIL import ImageDraw

ANIMALS = ("chicken", "sheep", "cow", "pig")
OBJECT_LABELS = ("barn", "hay") + ANIMALS
LAYOUTS = ("classic", "randomized")
SPLITS = ("train", "validation", "test")
COUNT_ANSWERS = ("0", "1", "2", "3")
NOTHING = "nothing"  # the answer about an empty place (configs with `empty_share`)

# Question types in the order every image asks them.
_QUESTION_TYPES = {
    "classic": ("roof", "front", "hay"),
    "randomized": ("roof", "front", "hay_left", "hay_right", "count"),
}
_QUESTION_TEXTS = {
    "roof": "What animal is on top of the roof of the barn?",
    "front": "What animal is near the front of the barn?",
    "hay": "What animal is near the hay?",
    "hay_left": "What animal is just left of the hay?",
    "hay_right": "What animal is just right of the hay?",
    "count": "How many {plural} are there?",
}
_PLURALS = {"chicken": "chickens", "sheep": "sheep", "cow": "cows", "pig": "pigs"}

# Layouts are in shares of the image size, so they fit at any size, but below this the
# smallest sprite (a chicken, 0.09 of the image tall) shrinks under 6 pixels and loses its
# comb, beak and legs.
_MIN_IMAGE_SIZE = 64
# The randomized layout packs at most 4 + 3 + this many animals; more may not fit.
_MAX_EXTRA_DISTRACTORS = 3

# Seeds are SeedSequence([seed, split id, index]), so a split's images do not depend on the
# split sizes or on the order in which examples are rendered.
_SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(
            f"`split` must be one of: {', '.join(SPLITS)}; received {split!r}"
        )


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """A barn scene configuration: layout, image size, split sizes and variation.

    Args:
        name: str. The config's name, also the TFDS config name.
        description: str. A one-line description. Defaults to `""`.
        image_size: int. Height and width of the square RGB image in pixels. All geometry
            scales with it. Defaults to `256`.
        layout: str. `"classic"` (fixed places, as in the PyTorch reference) or
            `"randomized"` (barn and hay anywhere, distractors, counting).
            Defaults to `"classic"`.
        num_train: int. Number of training images. Defaults to `10000`.
        num_validation: int. Number of validation images. Defaults to `1000`.
        num_test: int. Number of test images. Defaults to `1000`.
        vary_scale: bool. Scale each sprite by a factor in [0.9, 1.1]. Defaults to `True`.
        vary_flip: bool. Mirror each animal left-right with probability 1/2.
            Defaults to `True`.
        vary_color: bool. Jitter each sprite's and the background's brightness by up to 8%
            and each colour channel by up to 3% more. Defaults to `True`.
        position_jitter: float. Classic layout: how far, as a share of the image size, the
            barn and the hay move from their fixed places. The randomized layout samples
            every position and ignores it. Defaults to `0.02`.
        max_extra_distractors: int. Randomized layout: up to this many animals of kinds the
            count question does not ask about, placed away from barn and hay (animals of
            the counted kind are added as needed). Must be 0 for the classic layout.
            Defaults to `0`.
        seed: int. Base seed; images depend only on (seed, split, index).
            Defaults to `0`.
        empty_share: float. Probability that a relation place (roof, front, by the hay)
            stays empty; its question is then answered `"nothing"`, an extra answer.
            `0` draws nothing extra, so closed configs render as before. Defaults to `0`.

    Example:

    ```python
    config = SceneConfig(name="small", layout="randomized", image_size=128,
                         num_train=100, num_validation=10, num_test=10,
                         max_extra_distractors=2)
    config.question_types  # ('roof', 'front', 'hay_left', 'hay_right', 'count')
    ```
    """

    name: str
    description: str = ""
    image_size: int = 256
    layout: str = "classic"
    num_train: int = 10000
    num_validation: int = 1000
    num_test: int = 1000
    vary_scale: bool = True
    vary_flip: bool = True
    vary_color: bool = True
    position_jitter: float = 0.02
    max_extra_distractors: int = 0
    seed: int = 0
    empty_share: float = 0.0

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"`name` must be a non-empty string, received {self.name!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(
                f"`layout` must be one of: {', '.join(LAYOUTS)}; received {self.layout!r}"
            )
        if not _is_int(self.image_size) or self.image_size <= 0:
            raise ValueError(
                f"`image_size` must be a positive integer, received {self.image_size!r}"
            )
        if self.image_size < _MIN_IMAGE_SIZE:
            raise ValueError(
                f"`image_size` must be at least {_MIN_IMAGE_SIZE} (smaller images cannot "
                f"show the animals apart), received {self.image_size}"
            )
        # TFDS cannot write an empty split, so every split holds at least one image.
        for field in ("num_train", "num_validation", "num_test"):
            value = getattr(self, field)
            if not _is_int(value) or value <= 0:
                raise ValueError(f"`{field}` must be a positive integer, received {value!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer, received {self.seed!r}")
        for field in ("vary_scale", "vary_flip", "vary_color"):
            if not isinstance(getattr(self, field), bool):
                raise ValueError(
                    f"`{field}` must be a bool, received {getattr(self, field)!r}"
                )
        jitter = self.position_jitter
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not (
            0.0 <= jitter <= 0.05
        ):
            raise ValueError(
                f"`position_jitter` must be in [0, 0.05], received {self.position_jitter!r}"
            )
        share = self.empty_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not (
            0.0 <= share <= 0.5
        ):
            raise ValueError(f"`empty_share` must be in [0, 0.5], received {share!r}")
        max_extra = _MAX_EXTRA_DISTRACTORS if self.layout == "randomized" else 0
        if (
            not _is_int(self.max_extra_distractors)
            or not 0 <= self.max_extra_distractors <= max_extra
        ):
            raise ValueError(
                f"`max_extra_distractors` must be in [0, {max_extra}] for the "
                f"{self.layout} layout, received {self.max_extra_distractors!r}"
            )

    @property
    def question_types(self):
        """The question type names, in the order every image asks them."""
        return _QUESTION_TYPES[self.layout]

    @property
    def questions_per_image(self):
        """Every image has exactly one question of each type."""
        return len(self.question_types)

    @property
    def answers(self):
        """The answer vocabulary: the animals, for `randomized` the counts 0..3, and
        `"nothing"` when places can be empty."""
        counts = COUNT_ANSWERS if self.layout == "randomized" else ()
        return ANIMALS + counts + ((NOTHING,) if self.empty_share else ())

    def num_examples(self, split):
        """Number of images in `split` ("train", "validation" or "test")."""
        _check_split(split)
        return {
            "train": self.num_train,
            "validation": self.num_validation,
            "test": self.num_test,
        }[split]


CONFIGS = {
    c.name: c
    for c in [
        SceneConfig(
            name="classic",
            description=(
                "The PyTorch-AdaHAN reference scene: barn left, hay right, three animals "
                "at fixed places, three questions."
            ),
        ),
        SceneConfig(
            name="randomized",
            description=(
                "Barn and hay anywhere, distractor animals, five question types "
                "(roof, front, left/right of the hay, counting)."
            ),
            layout="randomized",
            max_extra_distractors=2,
        ),
        SceneConfig(
            name="classic_open",
            description=(
                "classic with each animal's place empty one time in five (answer "
                "'nothing'): no animal can be answered by elimination."
            ),
            empty_share=0.2,
        ),
        SceneConfig(
            name="randomized_open",
            description=(
                "randomized with each relation's place empty one time in five (answer "
                "'nothing'): no animal can be answered by elimination."
            ),
            layout="randomized",
            max_extra_distractors=2,
            empty_share=0.2,
        ),
        SceneConfig(
            name="tiny",
            description="A 64x64 classic scene with 8/4/4 images, for tests.",
            image_size=64,
            num_train=8,
            num_validation=4,
            num_test=4,
        ),
        SceneConfig(
            name="tiny_randomized",
            description="A 64x64 randomized scene with 8/4/4 images, for tests.",
            image_size=64,
            layout="randomized",
            num_train=8,
            num_validation=4,
            num_test=4,
            max_extra_distractors=2,
        ),
    ]
}


def get_config(name):
    """Returns the predefined `SceneConfig` called `name`.

    Args:
        name: str. One of the keys of `CONFIGS`.

    Example:

    ```python
    scenes.get_config("tiny").image_size  # 64
    ```
    """
    if name not in CONFIGS:
        raise ValueError(
            f"unknown barn_vqa config {name!r}; choose one of: {', '.join(CONFIGS)}"
        )
    return CONFIGS[name]


@dataclasses.dataclass(frozen=True)
class SceneObject:
    """One drawn object: `label` in `OBJECT_LABELS`, `box` normalized (ymin, xmin, ymax, xmax)."""

    label: str
    box: tuple


@dataclasses.dataclass(frozen=True)
class Question:
    """One question about a scene.

    `type` is one of the config's `question_types`; `answer` is one of its `answers`.
    `box` grounds the answer: the box of the animal that answers it, or for `count` the
    union of the counted animals' boxes, `(0, 0, 0, 0)` when the count is 0. A count's box
    shows where the counted animals are, not one thing to attend to, so grounding is not
    meant to be scored on count questions.
    """

    text: str
    answer: str
    type: str
    box: tuple


@dataclasses.dataclass(frozen=True)
class Scene:
    """A rendered scene: `image` (uint8, (H, W, 3)), `questions` and `objects` (lists)."""

    image: np.ndarray
    questions: list
    objects: list


def render_scene(config, split, index):
    """Renders image `index` of `split` for `config`.

    The result depends only on `(config, split, index)`: rendering in any order, in any
    process, gives byte-identical images.

    Args:
        config: `SceneConfig`. The scene configuration.
        split: str. `"train"`, `"validation"` or `"test"`.
        index: int. The image's index in the split, in `[0, config.num_examples(split))`.

    Returns:
        A `Scene`.

    Example:

    ```python
    scene = render_scene(get_config("tiny"), "test", 3)
    scene.questions[0].text  # 'What animal is on top of the roof of the barn?'
    ```
    """
    if not isinstance(config, SceneConfig):
        raise ValueError(f"`config` must be a SceneConfig, received {config!r}")
    num = config.num_examples(split)
    if not _is_int(index) or not 0 <= index < num:
        raise ValueError(
            f"`index` must be an integer in [0, {num}) for split {split!r} of config "
            f"{config.name!r}, received {index!r}"
        )
    rng = np.random.default_rng(
        np.random.SeedSequence([config.seed, _SPLIT_IDS[split], int(index)])
    )
    layout = _layout_classic if config.layout == "classic" else _layout_randomized
    placed, questions = layout(config, rng)
    image = _background(config, rng)
    # Painter's order: what stands lower in the picture is nearer and is drawn later.
    # The barn and the hay go first: animals touch them but never stand behind them.
    order = sorted(
        range(len(placed)),
        key=lambda i: (placed[i].label in ANIMALS, placed[i].y0 + placed[i].height),
    )
    for i in order:
        placed[i].paste(image)
    size = config.image_size
    objects = [SceneObject(p.label, p.box(size)) for p in placed]
    questions = [
        Question(text, answer, qtype, _union_box([p.box(size) for p in grounds]))
        for text, answer, qtype, grounds in questions
    ]
    return Scene(image=image, questions=questions, objects=objects)


def render_split(config, split):
    """Yields `(index, Scene)` for every image of `split`, in index order.

    Args:
        config: `SceneConfig`. The scene configuration.
        split: str. `"train"`, `"validation"` or `"test"`.
    """
    for index in range(config.num_examples(split)):
        yield index, render_scene(config, split, index)


# ---------------------------------------------------------------------------------------
# Layouts. Geometry is in shares of the image size S, turned into pixels once.

_ANIMAL_UNIT = 0.12  # an animal's height is this share of S times its kind's factor
_ANIMAL_SHAPE = {  # kind: (height in animal units, width / height)
    "chicken": (0.75, 0.95),
    "sheep": (0.95, 1.35),
    "cow": (1.15, 1.45),
    "pig": (0.85, 1.4),
}
_BARN_WIDTH = 0.36  # of S; the barn is as tall as it is wide
_HAY_WIDTH = 0.17  # of S; the bale is 1.6 times as wide as it is tall
_HAY_ASPECT = 1.6
_RIDGE = (0.34, 0.66)  # the flat roof ridge, as shares of the barn's width
_FRONT_STEP = 0.03  # of S: the front animal stands this much nearer than the barn wall
_GAP = 0.06  # of S: distractors keep this far from barn, hay and each other
_HORIZON = {"classic": 0.58, "randomized": 0.3}  # sky above, grass below (share of S)


def _layout_classic(config, rng):
    """Barn left, hay right, animals on the roof, in front of the barn, left of the hay."""
    size = config.image_size
    jitter = config.position_jitter * size
    kinds = [ANIMALS[k] for k in rng.integers(0, len(ANIMALS), size=3)]
    barn, hay = _make_barn(config, rng), _make_hay(config, rng)
    roof, front, near_hay = (_make_animal(config, rng, kind) for kind in kinds)

    barn.place(
        x0=round(0.05 * size + rng.uniform(-jitter, jitter)),
        y1=round(0.82 * size + rng.uniform(-jitter, jitter)),
    )
    hay.place(
        x1=round(0.92 * size + rng.uniform(-jitter, jitter)),
        y1=round(0.82 * size + rng.uniform(-jitter, jitter)),
    )
    _put_on_roof(roof, barn, rng)
    _put_in_front(front, barn, rng, size)
    near_hay.place(x1=hay.x0, y1=hay.y0 + hay.height)
    relations = _empty_places(config, rng, [roof, front, near_hay])
    placed = [barn, hay, *[animal for animal in relations if animal is not None]]
    return placed, _relation_questions(config, relations)


def _layout_randomized(config, rng):
    """Barn and hay anywhere, four local relations, distractors, one count question."""
    size = config.image_size
    # Draw the count's answer first, uniformly, then relation animals that do not exceed
    # it: every count is equally likely, and because the counted kind is uniform too the
    # joint distribution is symmetric in the animals, so each relation's answer is still
    # uniform over the four animals. A question-blind majority guess stays near 1/5.
    counted = ANIMALS[rng.integers(0, len(ANIMALS))]
    count = int(rng.integers(0, len(COUNT_ANSWERS)))
    while True:
        kinds = [ANIMALS[k] for k in rng.integers(0, len(ANIMALS), size=4)]
        # An empty place (None) still gets a sprite below, to keep the layout's geometry,
        # but it is neither drawn nor counted.
        kinds = _empty_places(config, rng, kinds)
        if kinds.count(counted) <= count:
            break
    others = [a for a in ANIMALS if a != counted]
    num_extra = int(rng.integers(0, config.max_extra_distractors + 1))
    distractor_kinds = [counted] * (count - kinds.count(counted)) + [
        others[k] for k in rng.integers(0, len(others), size=num_extra)
    ]
    barn, hay = _make_barn(config, rng), _make_hay(config, rng)
    roof, front, hay_left, hay_right = (
        _make_animal(config, rng, kind or ANIMALS[0]) for kind in kinds
    )
    distractors = [_make_animal(config, rng, k) for k in distractor_kinds]

    # Feet stand well below the horizon, so nothing seems to float in the sky.
    ground = round((_HORIZON["randomized"] + 0.1) * size)
    gap = round(_GAP * size)
    for _ in range(1000):
        barn.place(x0=0, y1=0)
        _put_on_roof(roof, barn, rng)
        _put_in_front(front, barn, rng, size)
        barn_group = [barn, roof, front]
        if not _place_group(barn_group, rng, size, min_bottom=ground):
            continue
        hay.place(x0=0, y1=0)
        hay_left.place(x1=hay.x0, y1=hay.y0 + hay.height)
        hay_right.place(x0=hay.x0 + hay.width, y1=hay.y0 + hay.height)
        hay_group = [hay, hay_left, hay_right]
        taken = [_group_box(barn_group)]
        if not _place_group(hay_group, rng, size, min_bottom=ground, avoid=taken, gap=gap):
            continue
        taken.append(_group_box(hay_group))
        for animal in distractors:
            if not _place_group(
                [animal], rng, size, min_bottom=ground, avoid=taken, gap=gap
            ):
                break
            taken.append(_group_box([animal]))
        else:
            break
    else:  # Only reachable with sizes far outside the validated range.
        raise RuntimeError(f"could not lay out a randomized scene for {config.name!r}")

    relations = [
        None if kind is None else animal
        for kind, animal in zip(kinds, (roof, front, hay_left, hay_right))
    ]
    placed = [barn, hay, *[animal for animal in relations if animal is not None], *distractors]
    questions = _relation_questions(config, relations)
    counted_animals = [p for p in placed if p.label == counted]
    questions.append(
        (
            _QUESTION_TEXTS["count"].format(plural=_PLURALS[counted]),
            str(count),
            "count",
            counted_animals,
        )
    )
    return placed, questions


def _empty_places(config, rng, places):
    """`places` with each entry replaced by None (empty) with probability `empty_share`.

    Closed configs draw nothing here, so their images stay as they were.
    """
    if not config.empty_share:
        return list(places)
    empty = rng.uniform(size=len(places)) < config.empty_share
    return [None if is_empty else place for is_empty, place in zip(empty, places)]


def _relation_questions(config, relations):
    """One question per relation place, in `question_types` order; None = empty place."""
    return [
        (_QUESTION_TEXTS[qtype], NOTHING, qtype, []) if animal is None
        else (_QUESTION_TEXTS[qtype], animal.label, qtype, [animal])
        for qtype, animal in zip(config.question_types, relations)
    ]


def _put_on_roof(animal, barn, rng):
    """Stands `animal` on the barn's flat ridge, its feet on the roof's top row."""
    ridge_x = barn.x0 + barn.width * rng.uniform(*_RIDGE)
    animal.place(x0=round(ridge_x - animal.width / 2), y1=barn.y0)


def _put_in_front(animal, barn, rng, size):
    """Stands `animal` before the barn doors, a little nearer the viewer than the wall."""
    door_x = barn.x0 + barn.width * rng.uniform(0.4, 0.6)
    animal.place(
        x0=round(door_x - animal.width / 2),
        y1=barn.y0 + barn.height + round(_FRONT_STEP * size),
    )


def _place_group(group, rng, size, min_bottom, avoid=(), gap=0, tries=200):
    """Moves a rigid group of sprites to a random spot inside the image.

    The group's lowest pixel lands at or below `min_bottom` (on the grass), and the group's
    box keeps `gap` pixels from every box in `avoid`. Returns whether a spot was found.
    """
    y0, x0, y1, x1 = _group_box(group)
    lo_x, hi_x = -x0, size - x1
    lo_y, hi_y = max(-y0, min_bottom - y1), size - y1
    if lo_x > hi_x or lo_y > hi_y:
        return False
    for _ in range(tries):
        dx = int(rng.integers(lo_x, hi_x + 1))
        dy = int(rng.integers(lo_y, hi_y + 1))
        if not _overlaps((y0 + dy, x0 + dx, y1 + dy, x1 + dx), avoid, gap):
            for sprite in group:
                sprite.x0 += dx
                sprite.y0 += dy
            return True
    return False


def _group_box(group):
    """Pixel (y0, x0, y1, x1) around a group of placed sprites."""
    return (
        min(p.y0 for p in group),
        min(p.x0 for p in group),
        max(p.y0 + p.height for p in group),
        max(p.x0 + p.width for p in group),
    )


def _overlaps(box, others, gap):
    """Whether `box` comes closer than `gap` pixels to any of `others`."""
    y0, x0, y1, x1 = box
    return any(
        y0 < b[2] + gap and b[0] < y1 + gap and x0 < b[3] + gap and b[1] < x1 + gap
        for b in others
    )


def _union_box(boxes):
    if not boxes:
        return (0.0, 0.0, 0.0, 0.0)
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


# ---------------------------------------------------------------------------------------
# Placed sprites and compositing.


class _Placed:
    """A sprite (RGB pixels and an opacity mask, cropped tight) at a pixel position."""

    def __init__(self, label, rgb, mask):
        self.label = label
        self.rgb = rgb  # (h, w, 3) uint8
        self.mask = mask  # (h, w) bool
        self.height, self.width = mask.shape
        self.x0 = self.y0 = 0

    def place(self, *, y1, x0=None, x1=None):
        """Sets the position from the bottom edge and the left or right edge (exclusive)."""
        self.y0 = y1 - self.height
        self.x0 = x0 if x0 is not None else x1 - self.width

    def box(self, size):
        """Normalized (ymin, xmin, ymax, xmax) on pixel edges."""
        return (
            self.y0 / size,
            self.x0 / size,
            (self.y0 + self.height) / size,
            (self.x0 + self.width) / size,
        )

    def paste(self, image):
        size = image.shape[0]
        if not (
            0 <= self.y0 and self.y0 + self.height <= size
            and 0 <= self.x0 and self.x0 + self.width <= size
        ):
            raise AssertionError(f"{self.label} placed outside the image")
        region = image[self.y0 : self.y0 + self.height, self.x0 : self.x0 + self.width]
        region[self.mask] = self.rgb[self.mask]


def _color_factors(config, rng):
    # Mostly brightness, a little hue: a strong per-channel shift would tint a white sheep
    # pink. Always drawn, so turning jitter off does not shift the rest of the stream.
    factors = rng.uniform(0.92, 1.08) * rng.uniform(0.97, 1.03, size=3)
    return factors if config.vary_color else np.ones(3)


def _jitter(rgb, factors):
    return np.clip(rgb * factors, 0, 255).astype(np.uint8)


def _scale(config, rng):
    scale = rng.uniform(0.9, 1.1)
    return scale if config.vary_scale else 1.0


def _make_animal(config, rng, kind):
    units, aspect = _ANIMAL_SHAPE[kind]
    height = max(3, round(config.image_size * _ANIMAL_UNIT * units * _scale(config, rng)))
    flip = bool(rng.integers(0, 2)) and config.vary_flip
    rgb, mask = _sprite(kind, height, round(height * aspect), flip)
    return _Placed(kind, _jitter(rgb, _color_factors(config, rng)), mask)


def _make_barn(config, rng):
    width = round(config.image_size * _BARN_WIDTH * _scale(config, rng))
    rgb, mask = _sprite("barn", width, width, False)
    return _Placed("barn", _jitter(rgb, _color_factors(config, rng)), mask)


def _make_hay(config, rng):
    width = round(config.image_size * _HAY_WIDTH * _scale(config, rng))
    rgb, mask = _sprite("hay", round(width / _HAY_ASPECT), width, False)
    return _Placed("hay", _jitter(rgb, _color_factors(config, rng)), mask)


_SKY = np.array([160, 205, 240])
_GRASS = np.array([100, 175, 75])


def _background(config, rng):
    size = config.image_size
    image = np.empty((size, size, 3), np.uint8)
    horizon = round(_HORIZON[config.layout] * size)
    image[:horizon] = _jitter(_SKY, _color_factors(config, rng))
    image[horizon:] = _jitter(_GRASS, _color_factors(config, rng))
    return image


# ---------------------------------------------------------------------------------------
# Sprites, drawn once per (kind, height, width, flip) and cached per process. Drawing is
# deterministic, so the cache cannot change an image.


@functools.lru_cache(maxsize=None)
def _sprite(kind, height, width, flip):
    """Returns `(rgb, mask)` of a sprite drawn in a height x width box, cropped tight."""
    canvas = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    _DRAWERS[kind](_Pen(canvas))
    pixels = np.asarray(canvas)
    mask = pixels[..., 3] > 0
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    crop = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    rgb, mask = pixels[crop][..., :3], mask[crop]
    if flip:
        rgb, mask = rgb[:, ::-1], mask[:, ::-1]
    rgb, mask = np.ascontiguousarray(rgb), np.ascontiguousarray(mask)
    rgb.flags.writeable = mask.flags.writeable = False
    return rgb, mask


class _Pen:
    """Draws on a canvas in coordinates that are shares of its width (x) and height (y)."""

    def __init__(self, canvas):
        self.draw = ImageDraw.Draw(canvas)
        self.w, self.h = canvas.size
        # Thin at 256 pixels, still visible at 128. A sprite under 9 pixels (a 64-pixel
        # image) drops outlines, which would otherwise cover most of it.
        self.line_width = max(1, round(self.h / 28))
        self.outline_width = self.line_width if self.h >= 9 else 0

    def _xy(self, x, y):
        return (round(x * (self.w - 1)), round(y * (self.h - 1)))

    def _box(self, x0, y0, x1, y1):
        (a, b), (c, d) = self._xy(x0, y0), self._xy(x1, y1)
        return [a, b, max(a, c), max(b, d)]

    def _outline(self, outline):
        if outline is None or not self.outline_width:
            return {}
        return {"outline": outline, "width": self.outline_width}

    def ellipse(self, x0, y0, x1, y1, fill, outline=None):
        self.draw.ellipse(self._box(x0, y0, x1, y1), fill=fill, **self._outline(outline))

    def rect(self, x0, y0, x1, y1, fill, outline=None):
        self.draw.rectangle(self._box(x0, y0, x1, y1), fill=fill, **self._outline(outline))

    def polygon(self, points, fill, outline=None):
        points = [self._xy(x, y) for x, y in points]
        self.draw.polygon(points, fill=fill, **self._outline(outline))

    def line(self, points, fill, width=1.0):
        self.draw.line(
            [self._xy(x, y) for x, y in points], fill=fill,
            width=max(1, round(self.line_width * width)),
        )

    def circle(self, cx, cy, r, fill, outline=None):
        """A circle of radius `r` in shares of the height, whatever the aspect ratio."""
        rx = r * self.h / self.w
        self.ellipse(cx - rx, cy - r, cx + rx, cy + r, fill, outline)


# Animals face right; flipping mirrors them.
_OUTLINE = (60, 60, 60)
_WHITE = (250, 250, 245)


def _draw_barn(pen):
    red, dark_red, roof, trim = (180, 35, 30), (120, 20, 20), (85, 75, 75), (245, 245, 240)
    # The roof is a dark band along a gambrel outline; its flat top (the ridge, x in
    # _RIDGE) is where the roof animal stands.
    pen.polygon(
        [(0.0, 0.56), (0.11, 0.2), (0.34, 0.0), (0.66, 0.0), (0.89, 0.2), (1.0, 0.56)],
        fill=roof,
    )
    pen.polygon(
        [(0.07, 1.0), (0.07, 0.52), (0.17, 0.26), (0.37, 0.09), (0.63, 0.09),
         (0.83, 0.26), (0.93, 0.52), (0.93, 1.0)],
        fill=red, outline=trim,
    )
    pen.rect(0.42, 0.28, 0.58, 0.43, fill=dark_red, outline=trim)  # hay loft door
    pen.rect(0.28, 0.6, 0.72, 1.0, fill=dark_red, outline=trim)  # double doors
    pen.line([(0.5, 0.6), (0.5, 1.0)], fill=trim)
    for left, right in ((0.28, 0.5), (0.5, 0.72)):
        pen.line([(left, 0.6), (right, 1.0)], fill=trim)
        pen.line([(left, 1.0), (right, 0.6)], fill=trim)


def _draw_hay(pen):
    straw, dark, twine = (230, 195, 85), (180, 140, 45), (140, 90, 40)
    pen.rect(0.0, 0.0, 1.0, 1.0, fill=straw, outline=dark)
    for y in (0.3, 0.55, 0.8):
        pen.line([(0.08, y), (0.35, y - 0.06), (0.65, y), (0.92, y - 0.06)], fill=dark)
    for x in (0.3, 0.7):
        pen.line([(x, 0.0), (x, 1.0)], fill=twine, width=1.5)


def _draw_chicken(pen):
    red, yellow = (220, 30, 30), (250, 180, 20)
    pen.line([(0.38, 0.75), (0.36, 1.0)], fill=yellow, width=1.5)
    pen.line([(0.55, 0.75), (0.57, 1.0)], fill=yellow, width=1.5)
    pen.polygon([(0.0, 0.1), (0.3, 0.42), (0.05, 0.62)], fill=_WHITE, outline=_OUTLINE)
    pen.ellipse(0.05, 0.32, 0.78, 0.84, fill=_WHITE, outline=_OUTLINE)
    pen.ellipse(0.2, 0.48, 0.55, 0.7, fill=(225, 225, 220), outline=_OUTLINE)  # wing
    pen.ellipse(0.58, 0.0, 0.8, 0.2, fill=red)  # comb
    pen.ellipse(0.52, 0.1, 0.86, 0.46, fill=_WHITE, outline=_OUTLINE)
    pen.polygon([(0.84, 0.2), (1.0, 0.28), (0.84, 0.36)], fill=yellow)  # beak
    pen.ellipse(0.74, 0.34, 0.84, 0.5, fill=red)  # wattle
    pen.circle(0.72, 0.24, 0.035, fill=(0, 0, 0))


def _draw_sheep(pen):
    wool, face = (236, 236, 232), (45, 45, 50)
    for x in (0.2, 0.32, 0.55, 0.67):
        pen.rect(x, 0.6, x + 0.06, 1.0, fill=face)
    # A cloud of overlapping circles: draw them all outlined, then all filled, so only
    # the outer scallops keep an outline.
    puffs = [(0.16, 0.35), (0.3, 0.25), (0.46, 0.23), (0.6, 0.3), (0.13, 0.55),
             (0.3, 0.6), (0.48, 0.6), (0.62, 0.52), (0.38, 0.42)]
    for cx, cy in puffs:
        pen.circle(cx, cy, 0.2, fill=_OUTLINE)
    for cx, cy in puffs:
        pen.circle(cx, cy, 0.2 - 1.2 * pen.outline_width / pen.h, fill=wool)
    pen.ellipse(0.64, 0.1, 0.78, 0.26, fill=face)  # ear
    pen.ellipse(0.7, 0.14, 1.0, 0.58, fill=face)  # head
    pen.circle(0.85, 0.28, 0.04, fill=(255, 255, 255))


def _draw_cow(pen):
    black, pink, horn = (25, 25, 25), (240, 160, 170), (225, 215, 175)
    for x in (0.14, 0.26, 0.56, 0.68):
        pen.rect(x, 0.6, x + 0.07, 1.0, fill=_WHITE, outline=_OUTLINE)
        pen.rect(x, 0.9, x + 0.07, 1.0, fill=black)  # hooves
    pen.line([(0.08, 0.28), (0.01, 0.6)], fill=black)  # tail
    pen.ellipse(0.0, 0.55, 0.05, 0.7, fill=black)
    pen.rect(0.06, 0.2, 0.8, 0.7, fill=_WHITE, outline=_OUTLINE)
    for patch in ((0.13, 0.26, 0.33, 0.5), (0.42, 0.36, 0.62, 0.64), (0.58, 0.24, 0.74, 0.4)):
        pen.ellipse(*patch, fill=black)
    pen.ellipse(0.44, 0.64, 0.56, 0.78, fill=pink)  # udder
    pen.polygon([(0.76, 0.1), (0.78, 0.0), (0.82, 0.1)], fill=horn)
    pen.polygon([(0.9, 0.1), (0.94, 0.0), (0.96, 0.1)], fill=horn)
    pen.ellipse(0.74, 0.06, 0.98, 0.5, fill=_WHITE, outline=_OUTLINE)
    pen.ellipse(0.76, 0.1, 0.88, 0.3, fill=black)  # patch round the eye
    pen.ellipse(0.8, 0.34, 1.0, 0.56, fill=pink, outline=_OUTLINE)  # muzzle


def _draw_pig(pen):
    pink, dark = (245, 160, 180), (200, 95, 120)
    for x in (0.2, 0.32, 0.56, 0.68):
        pen.rect(x, 0.66, x + 0.08, 1.0, fill=pink, outline=dark)
    pen.ellipse(-0.02, 0.18, 0.12, 0.4, fill=None, outline=dark)  # curly tail
    pen.ellipse(0.05, 0.15, 0.85, 0.84, fill=pink, outline=dark)
    pen.ellipse(0.58, 0.1, 0.92, 0.62, fill=pink, outline=dark)  # head
    pen.polygon([(0.62, 0.18), (0.68, 0.0), (0.78, 0.14)], fill=dark)  # ear
    pen.ellipse(0.86, 0.26, 1.0, 0.52, fill=(235, 125, 150), outline=dark)  # snout
    pen.circle(0.91, 0.39, 0.03, fill=(90, 30, 40))
    pen.circle(0.96, 0.39, 0.03, fill=(90, 30, 40))
    pen.circle(0.77, 0.27, 0.035, fill=(0, 0, 0))


_DRAWERS = {
    "barn": _draw_barn,
    "hay": _draw_hay,
    "chicken": _draw_chicken,
    "sheep": _draw_sheep,
    "cow": _draw_cow,
    "pig": _draw_pig,
}
