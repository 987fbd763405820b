"""Can the relational module learn "closest" and "furthest" from ideal object features?

Sort-of-CLEVR's closest and furthest questions stay at the commonest-shape shortcut (~69%)
in every HAN+RN run on the 9,800 training scenes (docs/sort_of_clevr.md, "Closest and
furthest"). This isolates the module the model answers with,
`keras_adahan.layers.RelationalAggregation` (g 4 x 256 over every pair, the question
beside each pair) then LayerNorm and f (256, 256) as the `sort_of_clevr` preset,
from the image encoder, the fusion and hard attention: each scene is six objects given as
ideal features (colour one-hot, shape one-hot, centre in [-1, 1]^2), each question a
colour one-hot and closest/furthest, the answer the shape of that object. Adam at 1e-4,
batch 64, as kimhc6028/relational-networks. Prints test accuracy every tenth of the steps
beside the shortcut's (the commonest shape among the other five objects).

Knobs that bring it towards what the model sees:
- `--scenes N`: questions about N fixed scenes (Sort-of-CLEVR has 9,800 training images),
  not a new scene per question;
- `--coordinates cell`: each object's centre seen as its cell's on the 5x5 grid (the
  answers still from the exact centres), as HAN's kept cells give their coordinates;
- `--no-layer_norm`: no LayerNorm between the sum over pairs and f.

Example:

```
python benchmarks/relational_probe.py --steps 15000
python benchmarks/relational_probe.py --steps 15000 --scenes 9800 --coordinates cell
```
"""

import argparse
import time

import numpy as np

from keras_adahan import cli
from keras_adahan.layers import RelationalAggregation

NUM_OBJECTS = 6
GRID = 5  # The sort_of_clevr preset's 5x5 cells.
TEST_QUESTIONS = 4000
# The training questions are drawn at once: refuse what would not fit in a laptop's memory.
MAX_GIB = 8


def make_questions(rng, count, scenes=None, coordinates="exact"):
    """`count` questions: (object features (n, 6, 10), question (n, 8), answer (n,) 0/1 shape,
    kind (n,) 0 closest / 1 furthest, shortcut_right (n,) bool)."""
    if scenes is None:
        centres = rng.uniform(-1, 1, (count, NUM_OBJECTS, 2))
        shapes = rng.integers(0, 2, (count, NUM_OBJECTS))
    else:
        pick = rng.integers(0, len(scenes[0]), count)
        centres, shapes = scenes[0][pick], scenes[1][pick]
    rows = np.arange(count)
    named = rng.integers(0, NUM_OBJECTS, count)
    kind = rng.integers(0, 2, count)
    distance = np.linalg.norm(centres - centres[rows, named][:, None], axis=-1)
    distance[rows, named] = np.inf
    closest = distance.argmin(1)
    distance[rows, named] = -np.inf
    target = np.where(kind == 0, closest, distance.argmax(1))
    answer = shapes[rows, target]
    seen = centres
    if coordinates == "cell":  # The centre of the grid cell the object's centre lies in.
        seen = (np.floor((centres + 1) / 2 * GRID).clip(0, GRID - 1) + 0.5) / GRID * 2 - 1
    colours = np.broadcast_to(np.eye(NUM_OBJECTS), (count, NUM_OBJECTS, NUM_OBJECTS))
    features = np.concatenate([colours, np.eye(2)[shapes], seen], -1).astype("float32")
    question = np.concatenate([np.eye(NUM_OBJECTS)[named], np.eye(2)[kind]], -1)
    others_square = shapes.sum(1) - shapes[rows, named]  # Shape 1 among the other five.
    shortcut_right = (others_square >= 3).astype(int) == answer
    return features, question.astype("float32"), answer, kind, shortcut_right


def build(layer_norm):
    import keras  # Here, not above: keras_adahan first silences TensorFlow's start-up lines.

    objects = keras.Input((NUM_OBJECTS, NUM_OBJECTS + 4), name="objects")
    question = keras.Input((NUM_OBJECTS + 2,), name="question")
    every_object = keras.Input((NUM_OBJECTS,), name="mask")
    x = RelationalAggregation((256, 256, 256, 256))(objects, every_object, question=question)
    if layer_norm:
        x = keras.layers.LayerNormalization()(x)
    for units in (256, 256):
        x = keras.layers.Dense(units, activation="relu")(x)
    model = keras.Model([objects, question, every_object], keras.layers.Dense(2)(x))
    model.compile(keras.optimizers.Adam(1e-4),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=cli.positive_int, default=15000)
    parser.add_argument("--batch_size", type=cli.positive_int, default=64)
    parser.add_argument("--scenes", type=int, default=0,
                        help="a fixed set of this many scenes (0: a new scene per question)")
    parser.add_argument("--coordinates", choices=("exact", "cell"), default="exact")
    parser.add_argument("--layer_norm", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--seed", type=cli.seed, default=0)
    args = parser.parse_args(argv)
    if args.steps < 10 or args.scenes < 0:
        parser.error("--steps must be >= 10 (it reports every tenth), --scenes >= 0")
    # make_questions peaks near 1,100 bytes a question (its float64 temporaries); a fixed
    # scene takes 144 (float64 centres, int64 shapes).
    needed = args.steps * args.batch_size * 1100 + args.scenes * NUM_OBJECTS * 24  # Bytes.
    if needed > MAX_GIB * 2**30:  # Whole numbers: a 400-digit --steps is no float.
        parser.error(f"--steps x --batch_size questions and --scenes scenes would take "
                     f"{needed // 2**30:,} GiB of memory; expected under {MAX_GIB} GiB")

    import keras

    rng = np.random.default_rng(args.seed)
    keras.utils.set_random_seed(args.seed)
    scenes = None
    if args.scenes:
        scenes = (rng.uniform(-1, 1, (args.scenes, NUM_OBJECTS, 2)),
                  rng.integers(0, 2, (args.scenes, NUM_OBJECTS)))
    # Test scenes are always new ones: a fixed training set must generalize to them.
    test = make_questions(rng, TEST_QUESTIONS, coordinates=args.coordinates)
    train = make_questions(rng, args.steps * args.batch_size, scenes, args.coordinates)
    model = build(args.layer_norm)
    print(f"relational probe: {vars(args)}; the shortcut answers {test[4].mean():.1%} of "
          "the test questions right")
    print(f"{'steps':>7} {'closest':>8} {'furthest':>9} {'both':>6} {'seconds':>8}")
    start = time.time()
    # Ten reports; every step trained, though --steps is no multiple of ten.
    ends = np.linspace(0, args.steps, 11).astype(int)
    for first, last in zip(ends[:-1], ends[1:]):
        rows = slice(first * args.batch_size, last * args.batch_size)
        inputs = [train[0][rows], train[1][rows], np.ones(train[0][rows].shape[:2], "float32")]
        model.fit(inputs, train[2][rows], batch_size=args.batch_size, epochs=1, verbose=0)
        predicted = model.predict(
            [test[0], test[1], np.ones(test[0].shape[:2], "float32")], verbose=0).argmax(-1)
        right = predicted == test[2]
        print(f"{last:>7} {right[test[3] == 0].mean():>8.1%} "
              f"{right[test[3] == 1].mean():>9.1%} {right.mean():>6.1%} "
              f"{time.time() - start:>8.0f}", flush=True)


if __name__ == "__main__":
    cli.run(main)
