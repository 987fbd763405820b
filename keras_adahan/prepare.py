"""Prepared datasets: a registered dataset with its TFDS builder, built if needed, checked.

    python -m keras_adahan.prepare --dataset folder:PATH [--data_dir DIR]   # build only

`prepare_dataset(name)` gives a `Dataset`: a registered dataset (`keras_adahan.datasets.
registry`) with its TFDS builder, generated first if needed (one process at a time, after
removing what a killed build left), refused or rebuilt when its files are damaged.
`keras_adahan.data` turns its elements into batches.
"""

import contextlib
import dataclasses
import functools
import os
import shlex
import shutil
import time

import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core.constants import INCOMPLETE_PREFIX

from keras_adahan import cli
from keras_adahan import folders
from keras_adahan.datasets import registry


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

    @functools.cached_property
    def training_data(self):
        """What a run records of the data it trains on (config.json's `"data"`, which
        `--resume` compares): its training images and questions, and for a dataset that can
        change under its name (a user's folder) a hash of what its training split holds.
        Read once, at the run's start: the record is of the data it trained on."""
        data = {"train_images": self.num_examples("train"),
                "train_questions": self.num_questions("train")}
        if self.spec.training_digest:
            data["train_digest"] = self.spec.training_digest()
        return data

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


def run_dataset(run, data_dir=None):
    """The dataset a run (`run_files.load_run`) was trained on, from `data_dir` or the
    folder it was trained with; not built here (the error names the command that does)."""
    train = run.config["train"]
    return prepare_dataset(train["dataset"], data_dir or train["data_dir"], build=False)


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
    builder = dataset_builder(spec, data_dir)
    _check_folders(builder)
    damage = damaged(builder)
    if damage and not build:
        raise ValueError(f"{spec.title} in {builder.data_dir} is damaged: {damage}. Move that "
                         f"folder away and build it again with `{build_command(spec, data_dir)}`")
    if damage or not builder.is_prepared():
        if not build:
            changed = (" (or its files changed since it was: a changed folder is built anew)"
                       if name.startswith(registry.FOLDER_PREFIX) else "")
            raise FileNotFoundError(
                f"{spec.title} is not built in {builder.data_dir_root}{changed}; build it "
                f"with `{build_command(spec, data_dir)}`"
            )
        with _build_lock(builder):
            # Another process may have built it while this one waited for the lock.
            builder = dataset_builder(spec, data_dir)
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


def dataset_builder(spec, data_dir):
    """`spec`'s TFDS builder in `data_dir` (built or not); a damaged build's error names
    the folder and the command that rebuilds it."""
    try:
        return spec.make_builder(data_dir)
    except ValueError:  # Our own checks (a user's folder): their message says it all.
        raise
    except Exception as error:  # TFDS reads a built dataset's dataset_info.json here.
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(
            f"{spec.title} in {data_dir or 'the TFDS data folder'} cannot be read "
            f"({first_line}): its files are damaged. Move its folder away and build it again "
            f"with `{build_command(spec, data_dir)}`") from None


def _check_folders(builder):
    """A `ValueError` naming the first file (or link to no folder) where the dataset's
    folders go: `DATA_DIR/NAME/CONFIG/VERSION`, and `DATA_DIR/downloads` (TFDS's download
    folder, made by every build)."""
    root = os.path.abspath(builder.data_dir_root)
    path, folders_below = os.path.abspath(builder.data_dir), []
    while path != root and path != os.path.dirname(path):  # Up to the root, or to `/`.
        folders_below.append(path)
        path = os.path.dirname(path)
    for path in [root, os.path.join(root, "downloads"), *reversed(folders_below)]:
        if os.path.lexists(path) and not os.path.isdir(path):
            raise ValueError(f"{path!r} is in the way of the dataset's folders: expected a "
                             "folder there; move it away or pass another --data_dir")


def build_command(spec, data_dir):
    """The shell command that builds `spec` into `data_dir` (None: TFDS's default), from
    any folder (`tfds build datasets/NAME` needs the repository's)."""
    command = f"python -m keras_adahan.prepare --dataset {shlex.quote(spec.name)}"
    return command + (f" --data_dir {shlex.quote(data_dir)}" if data_dir else "")


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
    path = os.path.join(config_dir, ".build.lock")
    try:  # Never through a link, and never truncated: it may be another's file.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as error:
        raise cli.UserError(f"cannot lock the dataset folder {config_dir!r}: {path!r} is not "
                            f"a plain file this project can write ({error.strerror})") from None
    with os.fdopen(fd) as lock:
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


def main(argv=None):
    """Builds a dataset (a folder of your own, CLEVR, ...) without training on it."""
    parser = cli.ArgumentParser(prog="python -m keras_adahan.prepare",
                                description=main.__doc__)
    parser.add_argument("--dataset", required=True, type=cli.dataset_name, metavar="DATASET",
                        help="a registered dataset (see python -m keras_adahan.train --help) "
                             "or folder:PATH")
    parser.add_argument("--data_dir", default=None, type=cli.folder_path,
                        help="TFDS data folder. Default: TFDS's (~/tensorflow_datasets)")
    args = parser.parse_args(argv)
    if args.data_dir:
        folders.check_creatable(args.data_dir, "--data_dir")
    dataset = prepare_dataset(args.dataset, args.data_dir)
    sizes = ", ".join(f"{split} {info.num_examples:,}"
                      for split, info in dataset.builder.info.splits.items())
    print(f"{dataset.spec.title} is built in {dataset.builder.data_dir} (images: {sizes})")


if __name__ == "__main__":
    cli.run(main)
