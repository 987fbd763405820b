"""The input pipeline: a prepared dataset's splits to batches for `model.fit` and evaluation.

`prepare_dataset(name)` (from `keras_adahan.prepare`) gives a `Dataset`; this module
tokenizes, resizes, caches and batches its elements. One element is one image with all of
its questions, so the trainer encodes each image once however many questions it has (see
`model.build_training_model`).
"""

import dataclasses
import functools

import numpy as np
import tensorflow as tf

from keras_adahan.prepare import Dataset  # noqa: F401  (the pipeline's input)
from keras_adahan.prepare import damaged  # noqa: F401
from keras_adahan.prepare import prepare_dataset  # noqa: F401
from keras_adahan.prepare import run_dataset  # noqa: F401
from keras_adahan.preprocessing import resize_images
from keras_adahan.text import Vocabulary
from keras_adahan.text import tokenize

AUTOTUNE = tf.data.AUTOTUNE


def check_question_lengths(dataset, max_question_length, splits=None):
    """Raises `ValueError` naming the first question of `splits` (default: all) longer than
    the model reads (found before training or evaluation, not as a graph error in the
    middle of it)."""
    for split in splits or dataset.builder.info.splits:
        for text in dataset.question_texts(split):
            if len(tokenize(text)) > max_question_length:
                raise ValueError(
                    f"{dataset.spec.title}'s {split} split asks {text!r}, "
                    f"{len(tokenize(text))} words; the model reads at most "
                    f"{max_question_length} (a model trained with --set "
                    "max_question_length=N reads N)")


def unknown_words(dataset, split, vocabulary):
    """`(questions, words)`: how many questions of `split` hold a word `vocabulary` lacks,
    and those words, commonest first."""
    known, counts, questions = set(vocabulary.words), {}, 0
    for text in dataset.question_texts(split):
        unknown = [word for word in tokenize(text) if word not in known]
        questions += bool(unknown)
        for word in unknown:
            counts[word] = counts.get(word, 0) + 1
    return questions, sorted(counts, key=lambda word: -counts[word])


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
    shuffle=False, seed=0, epochs=None, warmup=None,
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

    With `warmup=(type_ids, warmup_epochs)` (needs `epochs`), the epochs before
    `warmup_epochs` weigh only the questions of those types (the others: loss weight 0), and
    every batch carries weights.
    """
    ds = _encoded_split(dataset, split, vocabulary, image_size, max_question_length)
    num_examples = dataset.num_examples(split)

    fixed = dataset.fixed_questions and warmup is None

    def to_model(e, only_types=None):
        inputs = {"image": tf.cast(e["image"], tf.float32), "questions": e["questions"]}
        if fixed:
            return inputs, e["answers"]
        weights = tf.cast(e["answers"] >= 0, tf.float32)  # Padding and unknown answers: 0.
        if only_types is not None:
            is_kept_type = tf.reduce_any(e["types"][..., None] == only_types, axis=-1)
            weights *= tf.cast(is_kept_type, tf.float32)
        return inputs, tf.maximum(e["answers"], 0), weights

    def batch(ds):
        if dataset.fixed_questions:
            return ds.batch(batch_size)
        q = dataset.questions_per_image
        shapes = {"image": [image_size, image_size, 3], "questions": [q, max_question_length],
                  "answers": [q], "types": [q], "boxes": [q, 4]}
        padding = {"image": tf.constant(0, tf.uint8), "questions": 0,
                   "answers": tf.constant(-1, tf.int64), "types": tf.constant(0, tf.int64),
                   "boxes": 0.0}
        return ds.padded_batch(batch_size, padded_shapes=shapes, padding_values=padding)

    if epochs is None:
        if warmup is not None:
            raise ValueError("`warmup` needs `epochs`: it counts epochs")
        if shuffle:
            ds = ds.shuffle(num_examples, seed=seed)
        return batch(ds).map(to_model, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)

    warmup_types, warmup_epochs = warmup or ((), 0)
    warmup_types = tf.constant(warmup_types, tf.int64)

    def one_epoch(epoch):
        # A Python seed per epoch (a tensor seed breaks tf.data when the global seed is
        # 0); batched inside, so no batch straddles two epochs.
        shuffled = ds.shuffle(num_examples, seed=seed * 1_000_003 + epoch) if shuffle else ds
        only_types = warmup_types if epoch < warmup_epochs else None
        return batch(shuffled).map(lambda e: to_model(e, only_types), num_parallel_calls=AUTOTUNE)

    first, end = epochs
    ds = functools.reduce(tf.data.Dataset.concatenate,
                          [one_epoch(e) for e in range(first, end)], one_epoch(first).take(0))
    return ds.prefetch(AUTOTUNE)


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

    def rows(self, keep):
        """The questions `keep` selects (a boolean mask, indices or a slice), in order."""
        index = np.arange(len(self.answers))[keep]
        return dataclasses.replace(
            self, image_index=self.image_index[index], questions=self.questions[index],
            texts=[self.texts[i] for i in index], answers=self.answers[index],
            types=self.types[index], boxes=self.boxes[index])

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
    return arrays if known.all() else arrays.rows(known)
