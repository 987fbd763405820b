"""Tests for the barn scene renderer (`keras_adahan.datasets.barn_vqa`: `scene_config`,
`layout`, `drawing`): determinism, boxes, answers, balance and bad input.

Answers are checked against geometry derived independently from the objects' boxes, and
boxes against the rendered pixels, so a renderer that drew one thing and reported another
fails here.
"""

import dataclasses
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from keras_adahan.datasets.barn_vqa import drawing, layout, scene_config

CLASSIC = scene_config.get_config("classic")
RANDOMIZED = scene_config.get_config("randomized")
TINY = scene_config.get_config("tiny")
TINY_RANDOMIZED = scene_config.get_config("tiny_randomized")
CLASSIC_OPEN = scene_config.get_config("classic_open")
RANDOMIZED_OPEN = scene_config.get_config("randomized_open")
# Larger splits of the configs, to look at many scenes without new names.
MANY = {
    "classic": dataclasses.replace(CLASSIC, num_test=40),
    "randomized": dataclasses.replace(RANDOMIZED, num_test=40),
    "tiny": dataclasses.replace(TINY, num_test=200),
    "tiny_randomized": dataclasses.replace(TINY_RANDOMIZED, num_test=200),
    # The open configs at the tiny configs' size: many scenes, quickly.
    "classic_open": dataclasses.replace(CLASSIC_OPEN, image_size=64, num_test=200),
    "randomized_open": dataclasses.replace(RANDOMIZED_OPEN, image_size=64, num_test=200),
}


def _digest(scene):
    """A hash of everything a scene holds: pixels, questions and objects."""
    h = hashlib.sha256(scene.image.tobytes())
    h.update(repr((scene.questions, scene.objects)).encode())
    return h.hexdigest()


def _pixels(box, size):
    """Normalized (ymin, xmin, ymax, xmax) to integer pixel edges."""
    return tuple(round(v * size) for v in box)


def _animals(scene):
    return [o for o in scene.objects if o.label in scene_config.ANIMALS]


def _only(scene, label):
    (obj,) = [o for o in scene.objects if o.label == label]
    return obj


def _foreground(image):
    """Pixels that are not the plain sky or grass of their row."""
    sky, grass = image[0, 0], image[-1, 0]
    colours = []
    for row in image:
        # A row's background is whichever of sky and grass it holds more of: no object
        # covers most of a row.
        is_sky = (row == sky).all(-1).sum() >= (row == grass).all(-1).sum()
        colours.append(sky if is_sky else grass)
    return (image != np.array(colours)[:, None, :]).any(-1)


# ---------------------------------------------------------------------------------------
# Configs.


# The configs table of datasets/barn_vqa/README.md: image side, the question types every
# image asks (in order), train / validation / test sizes, and the answers its scenes give.
_CLASSIC_TYPES = ["roof", "front", "hay"]
_RANDOMIZED_TYPES = ["roof", "front", "hay_left", "hay_right", "count"]
_ANIMAL_ANSWERS = {"chicken", "sheep", "cow", "pig"}
_COUNT_ANSWERS = {"0", "1", "2", "3"}
README_CONFIGS = {
    "classic": (256, _CLASSIC_TYPES, (10000, 1000, 1000), _ANIMAL_ANSWERS),
    "randomized": (256, _RANDOMIZED_TYPES, (10000, 1000, 1000), _ANIMAL_ANSWERS | _COUNT_ANSWERS),
    "classic_open": (256, _CLASSIC_TYPES, (10000, 1000, 1000), _ANIMAL_ANSWERS | {"nothing"}),
    "randomized_open": (256, _RANDOMIZED_TYPES, (10000, 1000, 1000),
                        _ANIMAL_ANSWERS | _COUNT_ANSWERS | {"nothing"}),
    "tiny": (64, _CLASSIC_TYPES, (8, 4, 4), _ANIMAL_ANSWERS),
    "tiny_randomized": (64, _RANDOMIZED_TYPES, (8, 4, 4), _ANIMAL_ANSWERS | _COUNT_ANSWERS),
}


@pytest.mark.parametrize("name", sorted(README_CONFIGS))
def test_predefined_configs_render_as_documented(name):
    size, types, split_sizes, answers = README_CONFIGS[name]
    config = scene_config.get_config(name)
    # Each split holds its documented number of images: the last renders, one more is refused.
    for split, num in zip(("train", "validation", "test"), split_sizes):
        assert layout.render_scene(config, split, num - 1).image.shape == (size, size, 3)
        with pytest.raises(ValueError, match=rf"\[0, {num}\) for split '{split}'"):
            layout.render_scene(config, split, num)
    # 40 scenes (a longer test split renders the same first scenes: a scene depends only on
    # seed, split and index).
    seen = set()
    for index in range(40):
        scene = layout.render_scene(dataclasses.replace(config, num_test=40), "test", index)
        assert scene.image.dtype == np.uint8 and scene.image.shape == (size, size, 3)
        assert [q.type for q in scene.questions] == types, (name, index)
        seen.update(q.answer for q in scene.questions)
        assert sorted(o.label for o in scene.objects if o.label not in _ANIMAL_ANSWERS) == [
            "barn", "hay"]
        empty = sum(q.answer == "nothing" for q in scene.questions)
        if types == _CLASSIC_TYPES:  # One animal per place, none where a place is empty.
            assert len(_animals(scene)) == 3 - empty, (name, index)
        elif empty == 0:  # Four places, up to 3 counted and 2 more distractors.
            assert 4 <= len(_animals(scene)) <= 9, (name, index)
    # The scenes give every answer of the documented set and no other; the TFDS answer
    # labels (`config.answers`) are that set, "nothing" (when present) last.
    assert seen == answers, name
    assert set(config.answers) == answers and len(config.answers) == len(answers)
    if "nothing" in answers:
        assert config.answers[-1] == "nothing"


def test_classic_questions_are_the_reference_questions():
    scene = layout.render_scene(CLASSIC, "train", 0)
    assert [q.text for q in scene.questions] == [
        "What animal is on top of the roof of the barn?",
        "What animal is near the front of the barn?",
        "What animal is near the hay?",
    ]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image_size": 0}, "`image_size` must be a positive integer, received 0"),
        ({"image_size": -5}, "`image_size` must be a positive integer, received -5"),
        ({"image_size": 32}, "`image_size` must be at least 64"),
        ({"image_size": 48, "layout": "randomized"}, "received 48"),
        ({"image_size": 100.0}, "received 100.0"),
        ({"layout": "grid"}, "`layout` must be one of: classic, randomized; received 'grid'"),
        ({"num_train": 0}, "`num_train` must be a positive integer, received 0"),
        ({"num_test": -1}, "`num_test` must be a positive integer, received -1"),
        ({"seed": -1}, "`seed` must be a non-negative integer, received -1"),
        ({"vary_flip": 1}, "`vary_flip` must be a bool, received 1"),
        ({"position_jitter": 0.5}, "`position_jitter` must be in [0, 0.05], received 0.5"),
        ({"max_extra_distractors": 1}, r"must be in [0, 0] for the classic layout, received 1"),
        (
            {"max_extra_distractors": 9, "layout": "randomized"},
            "must be in [0, 3] for the randomized layout, received 9",
        ),
        ({"name": ""}, "`name` must be a non-empty string"),
        ({"empty_share": 0.9}, "`empty_share` must be in [0, 0.5], received 0.9"),
        ({"empty_share": True}, "`empty_share` must be in [0, 0.5], received True"),
    ],
)
def test_bad_config_raises(kwargs, message):
    kwargs = {"name": "bad", **kwargs}
    with pytest.raises(ValueError) as error:
        scene_config.SceneConfig(**kwargs)
    assert message in str(error.value)


def test_unknown_config_name_raises():
    with pytest.raises(ValueError) as error:
        scene_config.get_config("foo")
    assert "unknown barn_vqa config 'foo'" in str(error.value)
    assert "choose one of: classic, randomized, classic_open" in str(error.value)


def test_bad_render_arguments_raise():
    with pytest.raises(ValueError, match="received 'dev'"):
        layout.render_scene(TINY, "dev", 0)
    with pytest.raises(ValueError, match=r"\[0, 4\) for split 'test' .* received 4"):
        layout.render_scene(TINY, "test", 4)
    with pytest.raises(ValueError, match="received -1"):
        layout.render_scene(TINY, "train", -1)
    with pytest.raises(ValueError, match="must be a SceneConfig, received 'tiny'"):
        layout.render_scene("tiny", "train", 0)


# ---------------------------------------------------------------------------------------
# Determinism.


def test_same_inputs_give_identical_scenes():
    first = layout.render_scene(RANDOMIZED, "train", 7)
    drawing._sprite.cache_clear()  # A cold sprite cache must not change anything.
    second = layout.render_scene(RANDOMIZED, "train", 7)
    assert first.image.dtype == np.uint8 and first.image.shape == (256, 256, 3)
    assert _digest(first) == _digest(second)


def test_render_order_does_not_matter():
    keys = [(split, index) for split in scene_config.SPLITS for index in range(4)]
    forward = {k: _digest(layout.render_scene(TINY_RANDOMIZED, *k)) for k in keys}
    backward = {k: _digest(layout.render_scene(TINY_RANDOMIZED, *k)) for k in keys[::-1]}
    assert forward == backward
    # Different splits and indices are different scenes.
    assert len(set(forward.values())) == len(keys)


def test_other_process_renders_the_same_bytes():
    keys = [("validation", 3), ("train", 0), ("test", 2), ("train", 5)]
    script = f"""
import hashlib, json
from keras_adahan.datasets.barn_vqa import layout, scene_config
out = []
for name in ("classic", "randomized"):
    for split, index in {keys!r}:
        scene = layout.render_scene(scene_config.get_config(name), split, index)
        h = hashlib.sha256(scene.image.tobytes())
        h.update(repr((scene.questions, scene.objects)).encode())
        out.append(h.hexdigest())
print(json.dumps(out))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    # Here, render in the opposite order to the other process.
    here = {
        (config.name, key): _digest(layout.render_scene(config, *key))
        for config in (RANDOMIZED, CLASSIC)
        for key in reversed(keys)
    }
    expected = [here[name, key] for name in ("classic", "randomized") for key in keys]
    assert json.loads(result.stdout) == expected


def test_seed_changes_the_scenes():
    other = dataclasses.replace(TINY, seed=1)
    assert _digest(layout.render_scene(TINY, "train", 0)) != _digest(
        layout.render_scene(other, "train", 0)
    )


# ---------------------------------------------------------------------------------------
# Boxes.


@pytest.mark.parametrize("name", ["classic", "randomized", "tiny", "tiny_randomized"])
def test_boxes_are_inside_the_image_and_tight(name):
    config = MANY[name]
    size = config.image_size
    for index in range(20):
        scene = layout.render_scene(config, "test", index)
        drawn = _foreground(scene.image)
        covered = np.zeros_like(drawn)
        for obj in scene.objects:
            assert obj.label in scene_config.OBJECT_LABELS
            assert all(isinstance(v, float) for v in obj.box)
            y0, x0, y1, x1 = _pixels(obj.box, size)
            assert 0 <= y0 < y1 <= size and 0 <= x0 < x1 <= size, obj
            covered[y0:y1, x0:x1] = True
            # Tight: the object's drawn pixels reach all four edges of its box (pixels
            # of an animal standing in front can only add to that).
            inside = drawn[y0:y1, x0:x1]
            assert inside[0].any() and inside[-1].any(), obj
            assert inside[:, 0].any() and inside[:, -1].any(), obj
        # Everything drawn belongs to some object's box.
        assert not (drawn & ~covered).any(), (name, index)


def test_free_standing_animal_boxes_equal_their_pixels():
    # Distractors stand apart from everything, so their box must be exactly the bounding
    # box of the drawn pixels around them.
    config = MANY["randomized"]
    size = config.image_size
    checked = 0
    for index in range(20):
        scene = layout.render_scene(config, "test", index)
        drawn = _foreground(scene.image)
        related = {q.box for q in scene.questions if q.type != "count"}
        for obj in _animals(scene):
            if obj.box in related:
                continue
            y0, x0, y1, x1 = _pixels(obj.box, size)
            m = 5  # pixels of margin, well inside the gap kept around distractors
            window = drawn[max(0, y0 - m) : y1 + m, max(0, x0 - m) : x1 + m]
            rows, cols = np.flatnonzero(window.any(1)), np.flatnonzero(window.any(0))
            oy, ox = max(0, y0 - m), max(0, x0 - m)
            assert (oy + rows[0], ox + cols[0], oy + rows[-1] + 1, ox + cols[-1] + 1) == (
                y0, x0, y1, x1,
            )
            checked += 1
    assert checked > 10


def _kind_from_colours(pixels):
    """Guesses an animal from its drawn pixels' colours alone."""
    r, g, b = (pixels[:, c].astype(int) for c in range(3))
    pink = (r > 200) & (g >= 100) & (g <= 200) & (b >= 120) & (r - g > 40)
    yellow = (r > 200) & (g > 140) & (b < 90)
    dark = pixels.max(-1) < 90
    if pink.mean() > 0.5:
        return "pig"
    if yellow.any():
        return "chicken"  # its beak and legs
    if dark.any() and pink.any():
        return "cow"  # black patches and a pink muzzle
    if dark.any():
        return "sheep"  # a dark head on white wool
    return "unknown"


@pytest.mark.parametrize("name", ["classic", "randomized"])
def test_animal_boxes_hold_that_animal(name):
    config = MANY[name]
    size = config.image_size
    for index in range(20):
        scene = layout.render_scene(config, "test", index)
        drawn = _foreground(scene.image)
        front = next(q.box for q in scene.questions if q.type == "front")
        for obj in _animals(scene):
            if obj.box == front:
                continue  # Seen against the barn, whose colours would mix in.
            y0, x0, y1, x1 = _pixels(obj.box, size)
            pixels = scene.image[y0:y1, x0:x1][drawn[y0:y1, x0:x1]]
            assert _kind_from_colours(pixels) == obj.label, (index, obj)


def test_geometry_scales_with_image_size():
    big = layout.render_scene(dataclasses.replace(TINY, image_size=256), "train", 3)
    small = layout.render_scene(TINY, "train", 3)
    assert [o.label for o in big.objects] == [o.label for o in small.objects]
    for a, b in zip(big.objects, small.objects):
        assert np.allclose(a.box, b.box, atol=3 / 64), (a, b)


def test_no_variation_gives_fixed_sprites():
    config = dataclasses.replace(
        MANY["tiny"], vary_scale=False, vary_flip=False, vary_color=False,
        position_jitter=0.0,
    )
    barns = set()
    for index in range(10):
        scene = layout.render_scene(config, "test", index)
        barn = _only(scene, "barn")
        barns.add(barn.box)
        y0, x0, y1, x1 = _pixels(barn.box, config.image_size)
        barns.add(scene.image[y0 + 1, (x0 + x1) // 2].tobytes())  # roof colour
    assert len(barns) == 2


# ---------------------------------------------------------------------------------------
# Answers, derived again from the objects' boxes.


def _near(a, b, size):
    return abs(a - b) <= 1 / size + 1e-9


def _overlap(lo_a, hi_a, lo_b, hi_b):
    return lo_a < hi_b and lo_b < hi_a


def _relation_animals(scene, size):
    """For each relation, the animals whose boxes satisfy it, found from geometry only."""
    barn, hay = _only(scene, "barn").box, _only(scene, "hay").box
    found = {"roof": [], "front": [], "hay_left": [], "hay_right": []}
    for obj in _animals(scene):
        ymin, xmin, ymax, xmax = obj.box
        centre = (xmin + xmax) / 2
        # Feet on the roof's top row, the body above the barn's middle.
        if _near(ymax, barn[0], size) and barn[1] < centre < barn[3]:
            found["roof"].append(obj)
        # Overlapping the barn and standing nearer than its wall.
        if _overlap(ymin, ymax, barn[0], barn[2]) and _overlap(xmin, xmax, barn[1], barn[3]):
            if ymax > barn[2]:
                found["front"].append(obj)
        # Touching the hay's side, on the same ground.
        if _overlap(ymin, ymax, hay[0], hay[2]) and _near(ymax, hay[2], size):
            if _near(xmax, hay[1], size):
                found["hay_left"].append(obj)
            if _near(xmin, hay[3], size):
                found["hay_right"].append(obj)
    return found


@pytest.mark.parametrize("name", sorted(MANY))
def test_answers_follow_from_the_scene(name):
    config = MANY[name]
    size = config.image_size
    for index in range(config.num_test):
        scene = layout.render_scene(config, "test", index)
        assert [q.type for q in scene.questions] == list(config.question_types)
        found = _relation_animals(scene, size)
        if config.layout == "classic":
            found["hay"] = found.pop("hay_left") + found.pop("hay_right")
        for question in scene.questions:
            assert question.answer in config.answers
            if question.type == "count":
                plural = question.text.split()[2]
                kind = {"chickens": "chicken", "sheep": "sheep", "cows": "cow", "pigs": "pig"}[
                    plural
                ]
                counted = [o for o in scene.objects if o.label == kind]
                assert question.answer == str(len(counted))
                if counted:
                    boxes = np.array([o.box for o in counted])
                    union = (*boxes[:, :2].min(0), *boxes[:, 2:].max(0))
                    assert np.allclose(question.box, union)
                else:
                    assert question.box == (0.0, 0.0, 0.0, 0.0)
                continue
            if question.answer == scene_config.NOTHING:  # An empty place: no animal there.
                assert found[question.type] == [], (index, question)
                assert question.box == (0.0, 0.0, 0.0, 0.0)
                continue
            # Exactly one animal stands in the asked place: no distractor is ambiguous.
            (animal,) = found[question.type]
            assert question.answer == animal.label, (index, question)
            assert question.box == animal.box
        # Every other animal keeps well away from barn and hay.
        related = {o.box for objs in found.values() for o in objs}
        for obj in _animals(scene):
            if obj.box in related:
                continue
            for thing in ("barn", "hay"):
                other = _only(scene, thing).box
                dy = max(other[0] - obj.box[2], obj.box[0] - other[2])
                dx = max(other[1] - obj.box[3], obj.box[1] - other[3])
                assert max(dx, dy) >= 0.05, (index, obj, thing)


# ---------------------------------------------------------------------------------------
# Answer balance: a question-blind guess must do poorly.


def _answers_by_type(config, count):
    config = dataclasses.replace(config, num_test=count)
    by_type = {qtype: [] for qtype in config.question_types}
    for index in range(count):
        for question in layout.render_scene(config, "test", index).questions:
            by_type[question.type].append(question.answer)
    return by_type


@pytest.mark.parametrize("name", ["classic_open", "randomized_open"])
def test_open_configs_leave_places_empty(name):
    # About one place in five is empty; the closed configs never leave one empty.
    by_type = _answers_by_type(MANY[name], 200)
    for qtype, answers in by_type.items():
        share = answers.count(scene_config.NOTHING) / len(answers)
        if qtype == "count":
            assert share == 0
        else:
            # 200 draws of p = 0.2: standard deviation 0.028. `randomized_open` redraws
            # places that would exceed the count's answer, which favours empty ones.
            assert 0.1 < share < 0.35, (qtype, share)
    closed = _answers_by_type(MANY["tiny_randomized"], 50)
    assert scene_config.NOTHING not in {a for answers in closed.values() for a in answers}


@pytest.mark.parametrize("name", ["tiny", "tiny_randomized"])
def test_answers_are_balanced(name):
    config = scene_config.get_config(name)
    by_type = _answers_by_type(config, 400)
    for qtype, answers in by_type.items():
        values = scene_config.COUNT_ANSWERS if qtype == "count" else scene_config.ANIMALS
        shares = [answers.count(v) / len(answers) for v in values]
        # 400 draws: a share of 1/4 has a standard deviation near 0.022.
        assert all(0.15 < s < 0.35 for s in shares), (qtype, shares)
    everything = [a for answers in by_type.values() for a in answers]
    blind = max(everything.count(a) for a in config.answers) / len(everything)
    assert blind < (0.3 if config.layout == "classic" else 0.25)
