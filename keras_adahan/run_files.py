"""The run folder: what training writes and what evaluation, export and prediction read.

    RUN_DIR/
      .keras_adahan      marks the folder as this project's (see keras_adahan.folders)
      .lock              held by the trainer writing the folder
      model.keras        the single-question VQA model (inputs `image`, `question`)
      vocabulary.json    question words (see keras_adahan.text.Vocabulary)
      answers.json       answer labels, in the order of the model's logits
      config.json        {"model": ModelConfig fields, "train": trainer settings}
      history.csv        per-epoch metrics, rewritten as epochs finish
      backup/            weights, optimizer state and history of the last completed
                         epoch, for `--resume` (see keras_adahan.backup)
      training.json      time, throughput and the epoch whose weights were kept
      metrics.json       test-split evaluation (rewritten by `keras_adahan.evaluate`)
      plots/*.png        learning curves, attention examples

Every file is written to a temporary name, flushed to disk (fsync) and renamed into place,
so a killed process or a power cut never leaves a half-written file behind.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import zipfile

from keras_adahan import cli
from keras_adahan import folders

MODEL = "model.keras"
VOCABULARY = "vocabulary.json"
ANSWERS = "answers.json"
CONFIG = "config.json"
HISTORY = "history.csv"
TRAINING = "training.json"


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; on success flushes what was written there
    (a file, or every file of a folder) to disk and renames it onto `path`."""
    directory, name = os.path.split(os.path.abspath(path))
    # Keep the extension: Keras and TFLite writers look at it.
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{name}")
    try:
        yield tmp
        fsync_tree(tmp)
        os.replace(tmp, path)
        fsync_folder(directory)  # The rename itself.
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)


def fsync_tree(path):
    """Flushes a file, or every file and folder below a folder, to disk."""
    if os.path.isdir(path):
        for parent, _, files in os.walk(path):
            for name in files:
                fsync_tree(os.path.join(parent, name))
            fsync_folder(parent)
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(path):
    """Flushes a folder's entries (renames into it) to disk, where the system allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # Some file systems refuse fsync on a folder.
        pass
    finally:
        os.close(fd)


def remove_temporary_files(directory):
    """Deletes what `atomic_path` left in the run folder `directory` (and below) when its
    process was killed."""
    for parent, subfolders, files in os.walk(directory):
        inside = os.path.relpath(parent, directory).replace(os.sep, "/")
        written = {name for name in subfolders + files
                   if folders.is_being_written(name if inside == "." else f"{inside}/{name}")}
        for name in written:
            path = os.path.join(parent, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        subfolders[:] = [name for name in subfolders if name not in written]


def write_json(path, obj):
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2)


def read_json(path):
    """The JSON in `path`; a `ValueError` naming the file when it is not JSON."""
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{str(path)!r} is not a readable JSON file ({error})") from None


def write_run_files(folder, model_config, train, vocabulary, answers, **more):
    """A run's vocabulary and answers, then its config.json: `{"model": model_config
    (a ModelConfig), "train": train, **more}` with their checksums, which `load_run` checks
    (an edited file would give each id another's name)."""
    with atomic_path(os.path.join(folder, VOCABULARY)) as tmp:
        vocabulary.save(tmp)
    write_json(os.path.join(folder, ANSWERS), {"answers": list(answers)})
    write_json(os.path.join(folder, CONFIG), {
        "model": model_config.to_dict(), "train": train, **more,
        "checksums": {name: sha256(os.path.join(folder, name)) for name in (VOCABULARY, ANSWERS)},
    })


def sha256(path):
    """The SHA-256 of a file's bytes, in hex."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@dataclasses.dataclass
class Run:
    """A trained run, loaded: the `VQAModel`, its vocabulary, answer labels and config."""

    model: object
    vocabulary: object
    answers: list
    config: dict


def run_folder_of(run_dir_or_model):
    """The run folder a command is given: the folder itself, or the one of its `model.keras`
    (`.` for a bare `model.keras`).

    Raises `FileNotFoundError` for another `.keras` file: its folder's `model.keras` would be
    loaded in its place without a word.
    """
    if run_dir_or_model.endswith(".keras") and not os.path.isdir(run_dir_or_model):
        if os.path.basename(run_dir_or_model) != MODEL:
            raise FileNotFoundError(
                f"{run_dir_or_model!r} is not a run: expected a run folder of "
                f"keras_adahan.train or the {MODEL} inside one")
        return os.path.dirname(run_dir_or_model) or "."
    return run_dir_or_model


def load_run(run_dir_or_model):
    """Loads a run folder (or the `model.keras` inside one).

    Raises `FileNotFoundError` naming what is missing.
    """
    import keras

    from keras_adahan.text import Vocabulary

    run_dir = run_folder_of(run_dir_or_model)
    if os.path.isfile(run_dir):
        raise FileNotFoundError(f"{run_dir!r} is a file, not a run folder")
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"run folder {run_dir!r} does not exist")
    missing = [n for n in (MODEL, VOCABULARY, ANSWERS, CONFIG)
               if not os.path.exists(os.path.join(run_dir, n))]
    if missing:
        raise FileNotFoundError(
            f"{run_dir!r} is not a complete run folder: missing {', '.join(missing)} "
            "(train one with `python -m keras_adahan.train`)"
        )
    from keras_adahan.config import config_differences
    from keras_adahan.model import VQAModel  # Registers it and the layers for load_model.

    config = read_json(os.path.join(run_dir, CONFIG))
    if (not isinstance(config, dict) or not isinstance(config.get("model"), dict)
            or not isinstance(config.get("train"), dict)
            or not isinstance(config["train"].get("dataset"), str)
            or not isinstance(config["train"].get("data_dir"), (str, type(None)))):
        raise ValueError(f"{os.path.join(run_dir, CONFIG)!r} is not a run's config (it needs "
                         "\"model\" and \"train\" with its \"dataset\" and \"data_dir\", "
                         "a string or null)")
    config["train"].setdefault("data_dir", None)  # TFDS's default folder.
    # The vocabulary and answers give the ids and labels their meaning: an edited file would
    # answer with the wrong names without a word.
    checksums = config.get("checksums", {})
    if not isinstance(checksums, dict) or not all(
            name in (VOCABULARY, ANSWERS) and isinstance(value, str)
            for name, value in checksums.items()):
        raise ValueError(f"{os.path.join(run_dir, CONFIG)!r} is not a run's config: its "
                         f"\"checksums\" must map {VOCABULARY} and {ANSWERS} to SHA-256s")
    for name, expected in checksums.items():
        if sha256(os.path.join(run_dir, name)) != expected:
            raise ValueError(f"{os.path.join(run_dir, name)!r} is not the file this run was "
                             "trained with (edited or damaged)")
    model_path = os.path.join(run_dir, MODEL)
    if not zipfile.is_zipfile(model_path):
        raise ValueError(f"{model_path!r} is not a Keras model file (truncated or damaged?)")
    try:
        model = keras.models.load_model(model_path)
    except Exception as error:  # A foreign file: say which one.
        raise ValueError(f"cannot load {model_path!r}: {error}") from None
    if not isinstance(model, VQAModel):
        # Saved before models carried their config: the same graph, rebuilt from config.json.
        loaded, model = model, VQAModel(config["model"], name=model.name)
        model.set_weights(loaded.get_weights())
    differ = config_differences(config["model"], model.config, fresh_name=MODEL)
    if differ:  # Copied from another run: its answers and words are not this folder's.
        raise ValueError(f"{model_path!r} is not the model {os.path.join(run_dir, CONFIG)!r} "
                         f"describes: {', '.join(differ)}")
    try:
        vocabulary = Vocabulary.load(os.path.join(run_dir, VOCABULARY))
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{os.path.join(run_dir, VOCABULARY)!r} is not a vocabulary "
                         f"({error})") from None
    answers = read_json(os.path.join(run_dir, ANSWERS))
    answers = answers.get("answers") if isinstance(answers, dict) else None
    if (not isinstance(answers, list) or not all(isinstance(a, str) for a in answers)
            or len(set(answers)) != len(answers)
            or len(answers) != model.config.num_answers):
        raise ValueError(f"{os.path.join(run_dir, ANSWERS)!r} must hold the model's "
                         f"{model.config.num_answers} distinct answers")
    if vocabulary.size != model.config.vocab_size:
        raise ValueError(f"{os.path.join(run_dir, VOCABULARY)!r} holds {vocabulary.size - 2} "
                         f"words; the model was trained on {model.config.vocab_size - 2}")
    return Run(model=model, vocabulary=vocabulary, answers=answers, config=config)


# Settings a resumed run must share with the run it continues (the model config is
# compared too); --epochs may grow, --data_dir may move.
RESUME_MUST_MATCH = ("dataset", "seed", "preset", "batch_size", "learning_rate", "lr_schedule",
                     "init_from")
# And while epochs are left to train: the warm-up, and under a cosine schedule (it spans the
# run's epochs, so more of them would raise the rate) --epochs. With none left, a resume
# only writes the model and evaluates.
# So does --restore_best_weights: a run that kept no best epoch would pick one among the
# resumed epochs only.
RESUME_TRAINING_MUST_MATCH = ("warmup_types", "warmup_epochs", "restore_best_weights")
# What runs saved before a setting existed trained with.
SAVED_BEFORE = {"init_from": None, "warmup_types": None, "warmup_epochs": 0,
                "restore_best_weights": False}  # It began as an opt-in flag.


class RunFolder:
    """The run folder a trainer writes: locked for the whole run; with --overwrite, a new
    folder beside the old one, swapped in by `commit()` once the run has succeeded."""

    def __init__(self, final, path, locks):
        self.final, self.path, self.locks = final, path, locks

    def commit(self):
        if self.path != self.final:
            folders.swap_into_place(self.path, self.final, "run")
            self.path = self.final

    def __enter__(self):
        return self

    def __exit__(self, error_type, *_):
        if error_type is not None and self.path != self.final:  # A failed replacement.
            shutil.rmtree(self.path, ignore_errors=True)
        for lock in self.locks:
            lock.release()


def prepare_run_dir(args):
    """The `RunFolder` of `args.output_dir`; refuses to touch a folder it does not own, or
    one that another trainer is writing."""
    final = args.output_dir
    folders.remove_stale_staging(final)  # What a killed --overwrite run left.
    empty = folders.is_empty(final)
    if args.resume and not empty:
        if folders.folder_kind(final) != "run":
            raise cli.UserError(f"--resume: {final!r} holds no run to resume; drop --resume")
        lock = folders.FolderLock(final)
        check_resume_settings(args, final)
        remove_temporary_files(final)
        return RunFolder(final, final, [lock])
    if not empty and not args.overwrite:
        raise cli.UserError(
            f"the run folder {final!r} already exists. Pass --overwrite to replace it, "
            "--resume to continue it, or --output_dir to write elsewhere")
    if args.resume:  # Killed before it wrote anything: nothing to lose.
        print(f"--resume: nothing to resume in {final!r}; starting a new run")
    path, locks = final, []
    if not empty:  # --overwrite: a run folder of ours, not in use; replaced at the end.
        folders.check_replaceable(final, "run", "--output_dir",
                                  protect=[args.data_dir] if args.data_dir else [])
        locks.append(folders.FolderLock(final))
        path = folders.staging_path(final)
    os.makedirs(path, exist_ok=True)
    locks.append(folders.FolderLock(path))
    folders.write_marker(path, "run")
    return RunFolder(final, path, locks)


def saved_settings(run_dir, section="train"):
    """The "train" (or "model") settings in a run folder's config.json, for --resume;
    `cli.UserError` naming the folder when they cannot be read."""
    try:
        saved = read_json(os.path.join(run_dir, CONFIG))[section]
        if not isinstance(saved, dict):
            raise ValueError(f'"{section}" is a {type(saved).__name__}, not an object')
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise cli.UserError(f"--resume: cannot read {run_dir!r}'s config.json ({error}); "
                            "train into another --output_dir") from None
    return saved


def check_resume_settings(args, run_dir):
    """--resume continues the same run: the saved settings of `RESUME_MUST_MATCH` agree,
    those of `RESUME_TRAINING_MUST_MATCH` too while epochs are left to train, and --epochs
    is no fewer than the epochs trained."""
    from keras_adahan.backup import AtomicBackupAndRestore  # It imports this module.

    saved = {**SAVED_BEFORE, **saved_settings(run_dir)}
    names = RESUME_MUST_MATCH
    trained = AtomicBackupAndRestore(os.path.join(run_dir, "backup")).epoch
    if not trained and os.path.isfile(os.path.join(run_dir, MODEL)):
        raise cli.UserError(
            f"--resume: {run_dir!r} holds a trained model.keras but no backup/ to continue "
            "from (training would start again at epoch 1 and replace it); evaluate it with "
            "python -m keras_adahan.evaluate, train on from its weights with --init_from "
            f"{run_dir} and another --output_dir, or drop --resume and pass --overwrite to "
            "train it anew")
    if args.epochs < trained:
        raise cli.UserError(f"--resume: {run_dir!r} has trained {trained} epochs; pass "
                            f"--epochs {trained} or more (received --epochs {args.epochs})")
    if args.epochs > trained:
        names += RESUME_TRAINING_MUST_MATCH
        if args.lr_schedule == "cosine":
            names += ("epochs",)
    differ = [f"--{name} {saved.get(name)!r} (given {getattr(args, name)!r})"
              for name in names if saved.get(name) != getattr(args, name)]
    if differ:
        raise cli.UserError(f"--resume: {run_dir!r} was trained with {', '.join(differ)}; "
                            "resume with the command that started it")
