"""The barn_vqa input pipeline: TFDS splits to batches for `model.fit` and evaluation.

One element is one image with all of its questions, so the trainer encodes each image
once however many questions it has (see `model.build_training_model`).
"""

import contextlib
import dataclasses
import functools
import os
import shutil

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core.constants import INCOMPLETE_PREFIX

from keras_adahan.datasets.barn_vqa import Builder
from keras_adahan.preprocessing import resize_images
from keras_adahan.text import Vocabulary

AUTOTUNE = tf.data.AUTOTUNE


def dataset_builder(config_name, data_dir=None, build=True):
    """Returns the barn_vqa builder of a config, generating the dataset first if needed.

    Args:
        config_name: str. A barn_vqa config (`classic`, `randomized`, `tiny`, ...).
        data_dir: str. TFDS data folder. Defaults to TFDS's (`~/tensorflow_datasets`).
        build: bool. Generate the dataset when it is not there yet; otherwise raise.

    A build killed half-way leaves only an `incomplete.*` folder, which TFDS does not read
    as built; the next build deletes it first (see `_remove_incomplete_builds`).
    """
    builder = Builder(config=config_name, data_dir=data_dir)
    if not builder.is_prepared():
        if not build:
            raise FileNotFoundError(
                f"barn_vqa/{config_name} is not built in {builder.data_dir_root}; build it "
                f"with `tfds build datasets/barn_vqa --config {config_name}` or drop "
                "--no_build"
            )
        with _build_lock(builder):
            # Another process may have built it while this one waited for the lock.
            builder = Builder(config=config_name, data_dir=data_dir)
            if not builder.is_prepared():
                _remove_incomplete_builds(builder)
                print(f"Building barn_vqa/{config_name} in {builder.data_dir_root} "
                      "(first run only)")
                builder.download_and_prepare()
    return builder


@contextlib.contextmanager
def _build_lock(builder):
    """Holds an exclusive lock on the config's folder, so one process builds it at a time."""
    config_dir = os.path.dirname(builder.data_dir)  # DATA_DIR/barn_vqa/CONFIG
    os.makedirs(config_dir, exist_ok=True)
    with open(os.path.join(config_dir, ".build.lock"), "w") as lock:
        try:
            import fcntl
        except ImportError:  # Not on POSIX: no lock.
            yield
            return
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _remove_incomplete_builds(builder):
    """Deletes `incomplete.*` folders of the config: what a killed build leaves behind.

    TFDS generates into `DATA_DIR/barn_vqa/CONFIG/incomplete.XXXXXX_VERSION/` and renames it
    to `VERSION/` when done, so a killed build never reads as prepared; but its folder,
    possibly gigabytes, stays. Called with the build lock held: no live build of ours owns
    one (a concurrent `tfds build` of the same config and data_dir is not protected).
    """
    config_dir = os.path.dirname(builder.data_dir)
    for name in sorted(os.listdir(config_dir)):
        if name.startswith(INCOMPLETE_PREFIX):
            print(f"Removing {os.path.join(config_dir, name)}, left by an interrupted build")
            shutil.rmtree(os.path.join(config_dir, name))


def answer_names(builder):
    return list(builder.info.features["questions"]["answer"].names)


def question_type_names(builder):
    return list(builder.info.features["questions"]["type"].names)


def build_vocabulary(builder):
    """Builds the question vocabulary from the training split's questions only."""
    ds = builder.as_dataset("train", decoders={"image": tfds.decode.SkipDecoding()})
    texts = []
    for example in ds.map(lambda e: e["questions"]["question"]).as_numpy_iterator():
        texts.extend(t.decode() for t in example)
    return Vocabulary.from_texts(texts)


def _encoded_split(builder, split, vocabulary, image_size, max_question_length):
    """Decoded, resized and tokenized split, cached in memory after the first pass."""

    def encode(texts):
        return vocabulary.encode_batch([t.decode() for t in texts], max_question_length)

    def to_arrays(example):
        questions = tf.numpy_function(encode, [example["questions"]["question"]], tf.int32)
        # Every image of a config has the same number of questions (a fixed-length Sequence).
        questions.set_shape([example["questions"]["question"].shape[0], max_question_length])
        return {
            # uint8 keeps the cache small; resize_images rounds, so nothing is lost.
            "image": tf.cast(resize_images(example["image"], image_size), tf.uint8),
            "questions": questions,
            "answers": example["questions"]["answer"],
            "types": example["questions"]["type"],
            "boxes": example["questions"]["box"],
        }

    ds = builder.as_dataset(split, shuffle_files=False)
    return ds.map(to_arrays, num_parallel_calls=AUTOTUNE).cache()


def training_batches(
    builder, split, vocabulary, image_size, max_question_length, batch_size,
    shuffle=False, seed=0, epochs=None,
):
    """Batches `({"image", "questions"}, answers)` shaped `(B, S, S, 3)`, `(B, Q, L)`, `(B, Q)`.

    Decoding, resizing and tokenization happen once (cached); then shuffle, batch, cast
    and prefetch each epoch.

    With `epochs=(first, end)` the dataset holds epochs `first` to `end - 1` back to back
    (pass `steps_per_epoch=epoch_steps(...)` to `fit`), epoch `e` shuffled with a seed made
    of `seed` and `e`: its order is the same whether training started at epoch 0 or
    resumed at `first`. Without it, one epoch, reshuffled at each pass.
    """
    ds = _encoded_split(builder, split, vocabulary, image_size, max_question_length)
    num_examples = builder.info.splits[split].num_examples

    def to_model(e):
        return {"image": tf.cast(e["image"], tf.float32), "questions": e["questions"]}, e[
            "answers"
        ]

    if epochs is None:
        if shuffle:
            ds = ds.shuffle(num_examples, seed=seed)
        ds = ds.batch(batch_size)
    else:
        def one_epoch(epoch):
            # A Python seed per epoch (a tensor seed breaks tf.data when the global seed is
            # 0); batched inside, so no batch straddles two epochs.
            shuffled = ds.shuffle(num_examples, seed=seed * 1_000_003 + epoch) if shuffle else ds
            return shuffled.batch(batch_size)

        first, end = epochs
        ds = functools.reduce(tf.data.Dataset.concatenate,
                              [one_epoch(e) for e in range(first, end)], one_epoch(first).take(0))
    return ds.map(to_model, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def epoch_steps(builder, split, batch_size):
    """Batches in one epoch of `split`: the `steps_per_epoch` of `training_batches(epochs=...)`."""
    return -(-builder.info.splits[split].num_examples // batch_size)


@dataclasses.dataclass
class QuestionArrays:
    """One split flattened to one row per question, for evaluation and plots.

    Attributes:
        images: uint8 `(M, S, S, 3)`, one per image.
        image_index: int `(N,)`, the image of each question.
        questions: int32 `(N, L)` token ids.
        texts: list of N question strings.
        answers: int `(N,)`, types: int `(N,)`, boxes: float `(N, 4)` normalized
            `(ymin, xmin, ymax, xmax)` of the object that answers the question.
    """

    images: np.ndarray
    image_index: np.ndarray
    questions: np.ndarray
    texts: list
    answers: np.ndarray
    types: np.ndarray
    boxes: np.ndarray

    def batches(self, batch_size):
        """Yields `{"image", "question"}` inputs of the single-question model."""
        for start in range(0, len(self.answers), batch_size):
            rows = slice(start, start + batch_size)
            yield {
                "image": self.images[self.image_index[rows]].astype(np.float32),
                "question": self.questions[rows],
            }


def question_arrays(builder, split, vocabulary, image_size, max_question_length):
    """Loads a whole split into memory, one row per question."""
    images, image_index, questions, texts, answers, types, boxes = [], [], [], [], [], [], []
    ds = _encoded_split(builder, split, vocabulary, image_size, max_question_length)
    raw = builder.as_dataset(split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
    for i, (e, r) in enumerate(zip(ds.as_numpy_iterator(), raw.as_numpy_iterator())):
        images.append(e["image"])
        num = len(e["answers"])
        image_index.extend([i] * num)
        questions.append(e["questions"])
        texts.extend(t.decode() for t in r["questions"]["question"])
        answers.append(e["answers"])
        types.append(e["types"])
        boxes.append(e["boxes"])
    return QuestionArrays(
        images=np.stack(images),
        image_index=np.array(image_index),
        questions=np.concatenate(questions),
        texts=texts,
        answers=np.concatenate(answers),
        types=np.concatenate(types),
        boxes=np.concatenate(boxes).astype(np.float32),
    )
