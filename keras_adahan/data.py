"""The input pipeline: a prepared dataset's splits to batches for `model.fit` and evaluation.

`prepare_dataset(name)` gives a `Dataset`: a registered dataset (`keras_adahan.datasets.
registry`) with its TFDS builder, built if needed. One element is one image with all of its
questions, so the trainer encodes each image once however many questions it has (see
`model.build_training_model`).
"""

import contextlib
import dataclasses
import functools
import os
import shutil
import time

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core.constants import INCOMPLETE_PREFIX

from keras_adahan.datasets import registry
from keras_adahan.preprocessing import resize_images
from keras_adahan.text import Vocabulary

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass
class Dataset:
    """A registered dataset, prepared: its `spec` (`registry.DatasetSpec`) and TFDS `builder`.

    Its `elements(split)` are the pipeline's: answers as ids into `answer_names` (-1 for an
    answer the training split never gives, e.g. CLEVR's unanswered test split), types as
    ids into `type_names`, boxes (zeros where the dataset has none).
    """

    spec: registry.DatasetSpec
    builder: object

    @property
    def name(self):
        return self.spec.name

    @functools.cached_property
    def answer_names(self):
        if self.spec.answer_names is not None:
            return list(self.spec.answer_names(self.builder))
        return sorted(set(self._train_scan["answers"]))  # Text answers: the training split's.

    @functools.cached_property
    def type_names(self):
        return list(self.spec.type_names(self.builder))

    def num_examples(self, split):
        """Images in `split`."""
        return self.builder.info.splits[split].num_examples

    @functools.cached_property
    def questions_per_image(self):
        """Q of the training batches: every image's count, or the most any image of train or
        validation has (the others are padded, with zero loss weight)."""
        static = self._raw("train", decode_images=False).element_spec["questions"].shape[0]
        if static is not None:
            return static
        return max(max(self._scan(split)["counts"]) for split in ("train", "validation"))

    @property
    def fixed_questions(self):
        """Whether every image has the same number of questions (no padding needed)."""
        return self._raw("train", decode_images=False).element_spec["questions"].shape[0] is not None

    def num_questions(self, split):
        """Questions in `split`."""
        if self.fixed_questions:
            return self.num_examples(split) * self.questions_per_image
        return sum(self._scan(split)["counts"])

    def question_texts(self, split):
        """Every question of `split`, in file order."""
        return self._scan(split)["texts"]

    def elements(self, split, decode_images=True):
        """`split` as the pipeline's elements, in file order (see the class docstring)."""
        self.answer_names, self.type_names  # noqa: B018  (read eagerly, not while tracing)
        return self._raw(split, decode_images).map(self._complete)

    def _raw(self, split, decode_images):
        decoders = None if decode_images else {"image": tfds.decode.SkipDecoding()}
        ds = self.builder.as_dataset(split, shuffle_files=False, decoders=decoders)
        return ds.map(self.spec.to_element)

    def _complete(self, element):
        answers = element["answers"]
        if answers.dtype == tf.string:
            table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
                tf.constant(self.answer_names), tf.range(len(self.answer_names), dtype=tf.int64)),
                default_value=-1)
            answers = table.lookup(answers)
        count = tf.shape(answers)[0]
        types = element.get("types")
        if types is None and self.spec.answer_type is not None:
            kinds = [self.type_names.index(self.spec.answer_type(a)) for a in self.answer_names]
            types = tf.gather(tf.constant(kinds, tf.int64), tf.maximum(answers, 0))
        elif types is None:
            types = tf.zeros([count], tf.int64)
        boxes = element.get("boxes")
        if boxes is None:
            boxes = tf.zeros([count, 4], tf.float32)
        return {"image": element["image"], "questions": element["questions"],
                "answers": answers, "types": types, "boxes": boxes}

    def _scan(self, split):
        """Texts, text answers and question counts of a split, read once (images skipped)."""
        cache = self.__dict__.setdefault("_scans", {})
        if split not in cache:
            texts, answers, counts = [], [], []
            for element in self._raw(split, decode_images=False).as_numpy_iterator():
                texts.extend(t.decode() for t in element["questions"])
                if element["answers"].dtype.kind in "SO":
                    answers.extend(a.decode() for a in element["answers"])
                counts.append(len(element["questions"]))
            cache[split] = {"texts": texts, "answers": answers, "counts": counts}
        return cache[split]

    @property
    def _train_scan(self):
        return self._scan("train")


def prepare_dataset(name, data_dir=None, build=True):
    """The `Dataset` of a registered name, generating its files first if needed.

    Args:
        name: str. A `--dataset` name (`classic`, `randomized`, `tiny`, ...).
        data_dir: str. TFDS data folder. Defaults to TFDS's (`~/tensorflow_datasets`).
        build: bool. Generate the dataset when it is not there yet; otherwise raise.

    A build killed half-way leaves only an `incomplete.*` folder, which TFDS does not read
    as built; the next build deletes it first (see `_remove_incomplete_builds`).
    """
    spec = registry.get_dataset(name)
    builder = _builder(spec, data_dir)
    damage = damaged(builder)
    if damage and not build:
        raise ValueError(f"{spec.title} in {builder.data_dir} is damaged: {damage}. Move that "
                         f"folder away and build it again with `{spec.build_command}`")
    if damage or not builder.is_prepared():
        if not build:
            raise FileNotFoundError(
                f"{spec.title} is not built in {builder.data_dir_root}; build it with "
                f"`{spec.build_command}`"
            )
        with _build_lock(builder):
            # Another process may have built it while this one waited for the lock.
            builder = _builder(spec, data_dir)
            damage = damaged(builder)
            if damage:  # Kept aside, not deleted: it may hold what a user wants to see.
                aside = f"{builder.data_dir}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
                os.replace(builder.data_dir, aside)
                print(f"{spec.title} in {builder.data_dir} is damaged ({damage}); moved it "
                      f"to {aside} and building it again")
                builder = spec.make_builder(data_dir)
            if not builder.is_prepared():
                _remove_incomplete_builds(builder)
                print(f"Building {spec.title} in {builder.data_dir_root} (first run only)")
                builder.download_and_prepare()
    return Dataset(spec, builder)


def _builder(spec, data_dir):
    try:
        return spec.make_builder(data_dir)
    except ValueError:  # Our own checks (a user's folder): their message says it all.
        raise
    except Exception as error:  # TFDS reads a built dataset's dataset_info.json here.
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(
            f"{spec.title} in {data_dir or 'the TFDS data folder'} cannot be read "
            f"({first_line}): its files are damaged. Move its folder away and build it again "
            f"with `{spec.build_command}`") from None


def damaged(builder):
    """What is wrong with a prepared dataset's files, or None (also when it is not built).

    A version folder without `dataset_info.json` (a copy cut short, a deleted file), a
    missing shard, or a TFRecord shard whose size is not what `dataset_info.json` recorded
    (a truncated copy). Bit flips inside a shard show when it is read (its records carry
    checksums).
    """
    folder = builder.data_dir
    if not os.path.isdir(folder):
        return None
    if not builder.is_prepared():
        return "it has no dataset_info.json"
    for split, info in builder.info.splits.items():
        paths = [os.path.join(folder, name) for name in info.filenames]
        missing = [os.path.basename(p) for p in paths if not os.path.exists(p)]
        if missing:
            return f"the {split} split's shard {missing[0]} is missing"
        if builder.info.file_format.value == "tfrecord":
            # Each record adds a length and two checksums (16 bytes) to its example's bytes.
            expected = int(info.num_bytes) + 16 * info.num_examples
            found = sum(os.path.getsize(p) for p in paths)
            if found != expected:
                return (f"the {split} split's shards hold {found:,} bytes where "
                        f"{expected:,} were written")
    return None


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


def build_vocabulary(dataset):
    """Builds the question vocabulary from the training split's questions only."""
    return Vocabulary.from_texts(dataset.question_texts("train"))


def _encoded_split(dataset, split, vocabulary, image_size, max_question_length):
    """Decoded, resized and tokenized split, cached in memory after the first pass."""

    def encode(texts):
        return vocabulary.encode_batch([t.decode() for t in texts], max_question_length)

    def to_arrays(element):
        questions = tf.numpy_function(encode, [element["questions"]], tf.int32)
        # Known when every image has the same number of questions (barn_vqa), else None.
        questions.set_shape([element["questions"].shape[0], max_question_length])
        return {
            # uint8 keeps the cache small; resize_images rounds, so nothing is lost.
            "image": tf.cast(resize_images(element["image"], image_size), tf.uint8),
            "questions": questions,
            "answers": element["answers"],
            "types": element["types"],
            "boxes": element["boxes"],
        }

    return dataset.elements(split).map(to_arrays, num_parallel_calls=AUTOTUNE).cache()


def training_batches(
    dataset, split, vocabulary, image_size, max_question_length, batch_size,
    shuffle=False, seed=0, epochs=None,
):
    """Batches `({"image", "questions"}, answers)` shaped `(B, S, S, 3)`, `(B, Q, L)`, `(B, Q)`.

    Q is `dataset.questions_per_image`. Where images have fewer questions (CLEVR, a user's
    folder), they are padded to Q and each batch carries loss weights `(B, Q)` (0 on
    padding and on answers the training split never gives): `(inputs, answers, weights)`.

    Decoding, resizing and tokenization happen once (cached); then shuffle, batch, cast
    and prefetch each epoch.

    With `epochs=(first, end)` the dataset holds epochs `first` to `end - 1` back to back
    (pass `steps_per_epoch=epoch_steps(...)` to `fit`), epoch `e` shuffled with a seed made
    of `seed` and `e`: its order is the same whether training started at epoch 0 or
    resumed at `first`. Without it, one epoch, reshuffled at each pass.
    """
    ds = _encoded_split(dataset, split, vocabulary, image_size, max_question_length)
    num_examples = dataset.num_examples(split)

    fixed = dataset.fixed_questions

    def to_model(e):
        inputs = {"image": tf.cast(e["image"], tf.float32), "questions": e["questions"]}
        if fixed:
            return inputs, e["answers"]
        weights = tf.cast(e["answers"] >= 0, tf.float32)  # Padding and unknown answers: 0.
        return inputs, tf.maximum(e["answers"], 0), weights

    def batch(ds):
        if fixed:
            return ds.batch(batch_size)
        q = dataset.questions_per_image
        shapes = {"image": [image_size, image_size, 3], "questions": [q, max_question_length],
                  "answers": [q], "types": [q], "boxes": [q, 4]}
        padding = {"image": tf.constant(0, tf.uint8), "questions": 0,
                   "answers": tf.constant(-1, tf.int64), "types": tf.constant(0, tf.int64),
                   "boxes": 0.0}
        return ds.padded_batch(batch_size, padded_shapes=shapes, padding_values=padding)

    if epochs is None:
        if shuffle:
            ds = ds.shuffle(num_examples, seed=seed)
        ds = batch(ds)
    else:
        def one_epoch(epoch):
            # A Python seed per epoch (a tensor seed breaks tf.data when the global seed is
            # 0); batched inside, so no batch straddles two epochs.
            shuffled = ds.shuffle(num_examples, seed=seed * 1_000_003 + epoch) if shuffle else ds
            return batch(shuffled)

        first, end = epochs
        ds = functools.reduce(tf.data.Dataset.concatenate,
                              [one_epoch(e) for e in range(first, end)], one_epoch(first).take(0))
    return ds.map(to_model, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def epoch_steps(dataset, split, batch_size):
    """Batches in one epoch of `split`: the `steps_per_epoch` of `training_batches(epochs=...)`."""
    return -(-dataset.num_examples(split) // batch_size)


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


def question_arrays(dataset, split, vocabulary, image_size, max_question_length):
    """Loads a whole split into memory, one row per question with a known answer.

    Raises:
        ValueError: no question of `split` has an answer the model knows (CLEVR's test
            split has no answers).
    """
    images, image_index, questions, texts, answers, types, boxes = [], [], [], [], [], [], []
    ds = _encoded_split(dataset, split, vocabulary, image_size, max_question_length)
    raw = dataset.elements(split, decode_images=False)
    for i, (e, r) in enumerate(zip(ds.as_numpy_iterator(), raw.as_numpy_iterator())):
        images.append(e["image"])
        num = len(e["answers"])
        image_index.extend([i] * num)
        questions.append(e["questions"])
        texts.extend(t.decode() for t in r["questions"])
        answers.append(e["answers"])
        types.append(e["types"])
        boxes.append(e["boxes"])
    arrays = QuestionArrays(
        images=np.stack(images),
        image_index=np.array(image_index),
        questions=np.concatenate(questions),
        texts=texts,
        answers=np.concatenate(answers),
        types=np.concatenate(types),
        boxes=np.concatenate(boxes).astype(np.float32),
    )
    known = arrays.answers >= 0
    if not known.any():
        raise ValueError(f"no question of {dataset.spec.title}'s {split} split has an answer "
                         "from the training split (an unanswered split); evaluate "
                         f"--split {dataset.spec.evaluation_split}")
    if known.all():
        return arrays
    return dataclasses.replace(
        arrays, image_index=arrays.image_index[known], questions=arrays.questions[known],
        texts=[t for t, k in zip(texts, known) if k], answers=arrays.answers[known],
        types=arrays.types[known], boxes=arrays.boxes[known])
