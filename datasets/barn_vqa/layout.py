"""Where things go in a barn scene: layouts, placement, and the questions they answer.

`render_scene` is the one entry point that turns `(config, split, index)` into a `Scene`:
it places the sprites that `drawing.py` makes, paints them over the background, and
derives each question's answer and grounding box from that same placement.

Two layouts:

- `classic`: the PyTorch-AdaHAN reference's scene. The barn stands at the left, the hay at
  the right; one animal on the barn roof, one in front of the barn, one just left of the
  hay; three questions, one per place.
- `randomized`: barn and hay anywhere (no overlap), distractor animals elsewhere and kept
  clearly away from both, five questions: the four local relations `roof`, `front`,
  `hay_left`, `hay_right` and a `count` question ("How many pigs are there?").

Boxes follow the TFDS convention: normalized `(ymin, xmin, ymax, xmax)` in `[0, 1]`,
measured on pixel edges (a sprite covering rows 10..19 of a 100-pixel image has
`ymin=0.10, ymax=0.20`) and tight around the object's own drawn pixels, including pixels
later hidden by an animal standing in front of it.
"""

import numpy as np

from .drawing import _HORIZON
from .drawing import _RIDGE
from .drawing import _background
from .drawing import _make_animal
from .drawing import _make_barn
from .drawing import _make_hay
from .scene_config import ANIMALS
from .scene_config import COUNT_ANSWERS
from .scene_config import NOTHING
from .scene_config import Question
from .scene_config import Scene
from .scene_config import SceneConfig
from .scene_config import SceneObject
from .scene_config import _PLURALS
from .scene_config import _QUESTION_TEXTS
from .scene_config import _is_int

# Seeds are SeedSequence([seed, split id, index]), so a split's images do not depend on the
# split sizes or on the order in which examples are rendered.
_SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}


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
    scene = render_scene(scene_config.get_config("tiny"), "test", 3)
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

_FRONT_STEP = 0.03  # of S: the front animal stands this much nearer than the barn wall
_GAP = 0.06  # of S: distractors keep this far from barn, hay and each other


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
