"""Barn scene configs and questions: what a barn_vqa scene holds, not how it is drawn.

A scene is a farmyard drawn with Pillow (no image files): a barn, a hay bale and farm
animals (chicken, sheep, cow, pig), with questions whose answers and grounding boxes come
from the same placement that drew the picture. This module defines the vocabulary
(animals, object labels, answers, question texts), `SceneConfig` and the predefined
`CONFIGS` (also the TFDS configs of `barn_vqa`), and the `Scene` that a render returns.
`layout.py` places things and asks the questions; `drawing.py` draws the sprites.

Either layout can leave places empty (`empty_share`, the `*_open` configs): the question
about an empty place is answered "nothing". In the closed configs every place holds one of
the four animals, so a model that recognizes three of them can answer the fourth by
elimination without looking at it; an empty place breaks that shortcut.

Example:

```python
from keras_adahan.datasets.barn_vqa import layout, scene_config

config = scene_config.get_config("classic")
scene = layout.render_scene(config, "train", 0)
scene.image.shape  # (256, 256, 3), uint8
[(q.text, q.answer) for q in scene.questions]
```
"""

import dataclasses

import numpy as np

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
    get_config("tiny").image_size  # 64
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
