"""Training throughput: question-answer examples per second of `model.fit`.

    python benchmarks/train_throughput.py                      # reference and default presets
    python benchmarks/train_throughput.py --preset reference --batch_size 64

Feeds the trainer's own training model (each image encoded once for its 3 questions, as
in barn_vqa/classic) from a cached in-memory tf.data pipeline of 256x256 images resized
to the preset's input, so the figure is the model's and Keras' speed, not the disk's.
The PyTorch reference trains one example a step at about 107 steps/s on these 2 cores
(../shared/REFERENCE.md); the target for the `reference` preset is 10x that.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_adahan.model import build_model, build_training_model  # noqa: E402
from keras_adahan.presets import get_preset  # noqa: E402
from keras_adahan.train import TRAIN_DEFAULTS  # noqa: E402

QUESTIONS_PER_IMAGE = 3  # barn_vqa/classic
REFERENCE_STEPS_PER_SECOND = 107  # PyTorch reference, batch size 1, 2 threads


def measure(preset, batch_size, steps, variant, questions_per_image=QUESTIONS_PER_IMAGE,
            aggregation=None):
    changes = {"aggregation": aggregation} if aggregation else {}
    config = get_preset(preset, variant=variant, vocab_size=24, num_answers=4, **changes)
    keras.utils.set_random_seed(0)
    model = build_model(config)
    train_model = build_training_model(model, questions_per_image)
    train_model.compile(
        optimizer=keras.optimizers.Adam(TRAIN_DEFAULTS[preset]["learning_rate"]),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    rng = np.random.default_rng(0)
    num_images = batch_size * 8
    size = config.image_size
    images = rng.integers(0, 256, (num_images, size, size, 3), dtype=np.uint8)
    questions = rng.integers(2, 24, (num_images, questions_per_image, config.max_question_length))
    answers = rng.integers(0, 4, (num_images, questions_per_image))
    ds = (
        tf.data.Dataset.from_tensor_slices(
            ({"image": images, "questions": questions.astype(np.int32)}, answers)
        )
        .cache()
        .repeat()
        .batch(batch_size)
        .map(lambda x, y: ({"image": tf.cast(x["image"], tf.float32),
                            "questions": x["questions"]}, y))
        .prefetch(tf.data.AUTOTUNE)
    )
    train_model.fit(ds, steps_per_epoch=10, epochs=1, verbose=0, shuffle=False)  # Warm up.
    start = time.perf_counter()
    train_model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    return steps * batch_size * questions_per_image / seconds, steps * batch_size / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", nargs="+", default=["reference", "default"])
    parser.add_argument("--variant", default="han")
    parser.add_argument("--batch_size", type=int, default=32, help="images per step")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--questions", type=int, default=QUESTIONS_PER_IMAGE,
                        help="questions per image (barn_vqa 3; CLEVR about 10)")
    parser.add_argument("--aggregation", default=None,
                        help="override the preset's aggregation (e.g. relational: HAN+RN)")
    parser.add_argument("--per_question", action="store_true",
                        help="the alternative the trainer avoids: every question brings its "
                             "own copy of the image (encoded once per question)")
    args = parser.parse_args()
    questions = 1 if args.per_question else args.questions
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"{os.cpu_count()} CPUs, batch {args.batch_size} images x {questions} questions")
    print(f"{'preset':<10} {'questions/s':>12} {'images/s':>9} {'vs PyTorch reference':>21}")
    for preset in args.preset:
        per_second, images = measure(preset, args.batch_size, args.steps, args.variant,
                                     questions, args.aggregation)
        print(f"{preset:<10} {per_second:>12.0f} {images:>9.0f} "
              f"{per_second / REFERENCE_STEPS_PER_SECOND:>20.1f}x")


if __name__ == "__main__":
    main()
