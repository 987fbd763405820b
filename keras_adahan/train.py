"""Trains HAN / AdaHAN with `model.fit`: `python -m keras_adahan.train`.

With no arguments it builds the `classic_open` barn_vqa dataset if needed, trains the
`default` preset's HAN model, evaluates it on the test split and writes a run folder
(see `keras_adahan.run_files`). `main` reads top to bottom: arguments, distribution,
data, run folder, model, fit, save and evaluate; each phase is a function below it.
"""

import argparse
import contextlib
import json
import math
import os
import sys
import time

import keras

from keras_adahan import cli
from keras_adahan import compute
from keras_adahan import data
from keras_adahan import distribute
from keras_adahan import evaluate
from keras_adahan import folders
from keras_adahan import multiworker
from keras_adahan import plots
from keras_adahan import prepare
from keras_adahan import run_files
from keras_adahan.backup import AtomicBackupAndRestore
from keras_adahan.config import AGGREGATIONS
from keras_adahan.config import FUSIONS
from keras_adahan.config import config_differences
from keras_adahan.config import VARIANTS
from keras_adahan.datasets import registry
from keras_adahan.model import build_model
from keras_adahan.model import build_training_model
from keras_adahan.presets import PRESETS
from keras_adahan.presets import get_preset
from keras_adahan.text import Vocabulary

# --dtype: the Keras dtype policy the model trains under; "auto" measures this machine
# (compute.auto_dtype).
DTYPES = ("auto", "float32", "mixed_bfloat16")
DEFAULT_DTYPE = "auto"

# Trainer settings per preset; every flag left unset takes its preset's value.
TRAIN_DEFAULTS = {
    "default": dict(batch_size=32, learning_rate=1e-3, lr_schedule="constant"),
    # The reference's Adam lr 5e-4; batches of 32 images (96 questions) instead of its
    # one example a step, which is where most of the speed-up over it comes from.
    "reference": dict(batch_size=32, learning_rate=5e-4, lr_schedule="constant"),
    "reference_exact": dict(batch_size=32, learning_rate=5e-4, lr_schedule="constant"),
    # 32 images of ~10 questions each.
    "clevr": dict(batch_size=32, learning_rate=1e-3, lr_schedule="constant"),
    # 16 images of 20 questions: 320 questions a step. Cosine: at a constant rate the batch
    # norms' moving statistics trail the weights, and the model answers worse in inference
    # mode than in training mode (docs/sort_of_clevr.md).
    "sort_of_clevr": dict(batch_size=16, learning_rate=1e-3, lr_schedule="cosine"),
}


def argument_parser():
    parser = cli.ArgumentParser(
        prog="python -m keras_adahan.train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--preset", default="default", choices=sorted(PRESETS),
        help="model sizes: `reference` is the PyTorch reference's, `default` is tuned "
             "for accuracy and speed on the barn data")
    add("--variant", default="han", choices=VARIANTS,
        help="attention: han (top-k cells), adahan (adaptive, softmax threshold), soft "
             "(soft attention baseline), none (sum over all cells)")
    add("--dataset", default="classic_open", type=cli.dataset_name, metavar="DATASET",
        help="one of " + ", ".join(sorted(registry.DATASETS)) + " (barn_vqa: "
             "datasets/barn_vqa/README.md; clevr: datasets/clevr/README.md; sort_of_clevr: "
             "datasets/sort_of_clevr/README.md), or folder:PATH, a folder of your own "
             "images and questions (datasets/vqa_folder/README.md)")
    add("--k", type=cli.finite_float, default=None,
        help="HAN cells kept: a count (>= 1) or a share of the cells (< 1); AdaHAN's floor "
             "unless --min_cells. Default: the preset's")
    add("--min_cells", type=int, default=None,
        help="AdaHAN floor (--variant adahan only): cells kept at least, whatever the "
             "threshold. Default: the preset's (default preset: as many as HAN keeps, see --k)")
    add("--aggregation", default=None, choices=AGGREGATIONS,
        help="what the kept cells are aggregated with: sum (default preset), relational "
             "(HAN+RN: pairs of kept cells), flatten (the reference's). Default: the preset's")
    add("--fusion", default=None, choices=FUSIONS,
        help="how the question meets each cell: gated (default preset), concat (the "
             "paper's), add (the reference's). Default: the preset's")
    add("--threshold", type=cli.finite_float, default=None,
        help="AdaHAN softmax threshold in (0, 1] (--variant adahan only). Default: 1/number "
             "of cells")
    add("--set", action="append", default=[], metavar="FIELD=VALUE", dest="model_fields",
        help="any other keras_adahan.ModelConfig field, e.g. --set aggregate_norm=false "
             "--set rnn=lstm --set conv_filters=[16,32,64,64,64]; VALUE is read as JSON, "
             "else as a string; repeatable")
    add("--epochs", type=cli.positive_int, default=None,
        help="passes over the training images. Default: the dataset's (4 on "
             "classic(_open) and folder:PATH, 15 on randomized(_open), 20 on clevr and "
             "sort_of_clevr(_large), 2 otherwise)")
    add("--batch_size", type=cli.positive_int, default=None,
        help="images per step; each brings all its questions. Global: with --distribute "
             "it is split across the replicas. Default: the preset's")
    add("--learning_rate", type=cli.finite_float, default=None,
        help="Adam's initial learning rate; default: the preset's")
    add("--lr_schedule", default=None, choices=("constant", "cosine"),
        help="constant: Adam at --learning_rate throughout; cosine: decays it to 0 over the "
             "run's steps. Default: the preset's (cosine for sort_of_clevr, else constant)")
    add("--warmup_types", nargs="+", default=None, metavar="TYPE",
        help="question types (the dataset's, e.g. shape on sort_of_clevr) that alone count "
             "in the loss for the first --warmup_epochs epochs: a model first learns to find "
             "the object a question names (README, Sort-of-CLEVR)")
    add("--warmup_epochs", type=int, default=0,
        help="epochs that train on --warmup_types only; the rest train on every question")
    add("--restore_best_weights", action=argparse.BooleanOptionalAction, default=True,
        help="end with the weights of the epoch with the lowest validation loss (as Keras' "
             "EarlyStopping(restore_best_weights=True), and across --resume), not the last "
             "epoch's: a late unstable step can cost a run its counting. "
             "--no-restore_best_weights keeps the last epoch's")
    add("--dtype", default=DEFAULT_DTYPE, choices=DTYPES,
        help="training compute: float32, or mixed_bfloat16 (bfloat16 activations and "
             "matmuls, float32 weights; fast on CPUs with AMX, some with AVX512-BF16, and "
             "recent GPUs); auto (the default) times a matmul in both before training and "
             f"takes mixed_bfloat16 if it runs {compute.BFLOAT16_SPEEDUP}x float32's FLOP/s "
             "or more. model.keras is float32 either way")
    add("--init_from", default=None, metavar="RUN", type=cli.folder_path,
        help="start from the weights of a finished run folder instead of random ones "
             "(fine-tuning, or a curriculum over datasets): the same model config and "
             "answers; its vocabulary, which must hold every word of --dataset's questions; "
             "the optimizer and the epoch count start afresh")
    add("--seed", type=cli.seed, default=0, help="seeds weights and shuffling")
    add("--output_dir", default=None, type=cli.folder_path,
        help="run folder. Default: runs/DATASET-PRESET-VARIANT-seedSEED")
    add("--data_dir", default=None, type=cli.folder_path,
        help="TFDS data folder. Default: TFDS's (~/tensorflow_datasets)")
    add("--overwrite", action="store_true", help="replace an existing run folder")
    add("--resume", action="store_true",
        help="continue an interrupted run from its last completed epoch (weights, optimizer "
             "state, history); starts a new run if the folder is empty or missing")
    add("--distribute", default="none", choices=("none", "mirrored", "multiworker"),
        help="mirrored: tf.distribute.MirroredStrategy over all local devices (GPUs, else "
             "CPU); multiworker: MultiWorkerMirroredStrategy over the machines in TF_CONFIG, "
             "run on each (see keras_adahan.multiworker)")
    return parser


def parse_args(argv=None):
    parser = argument_parser()
    args = parser.parse_args(argv)

    for name, value in TRAIN_DEFAULTS[args.preset].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.epochs is None:
        args.epochs = registry.get_dataset(args.dataset).default_epochs
    if not 0 <= args.warmup_epochs < args.epochs:
        parser.error(f"--warmup_epochs must be in [0, --epochs) = [0, {args.epochs}), "
                     f"received {args.warmup_epochs}")
    if bool(args.warmup_types) != (args.warmup_epochs > 0):
        parser.error("--warmup_types and --warmup_epochs go together: pass both (or neither)")
    if args.learning_rate <= 0:
        parser.error(f"--learning_rate must be positive, received {args.learning_rate}")
    if args.overwrite and args.resume:
        parser.error("--overwrite and --resume exclude each other: pick one")
    for name in ("output_dir", "data_dir"):
        if getattr(args, name) is not None:
            folders.check_creatable(getattr(args, name), f"--{name}")
    if args.output_dir is None:
        dataset = args.dataset
        if dataset.startswith(registry.FOLDER_PREFIX):  # folder:/a/b/farm -> folder-farm
            dataset = "folder-" + os.path.basename(dataset[len(registry.FOLDER_PREFIX):])
        args.output_dir = os.path.join(
            "runs", f"{dataset}-{args.preset}-{args.variant}-seed{args.seed}"
        )
    if args.init_from is not None:
        if not os.path.isdir(args.init_from):
            parser.error(f"--init_from {args.init_from!r} is not a run folder (no such folder)")
        args.init_from = os.path.abspath(args.init_from)  # As config.json records it.
        if os.path.realpath(args.output_dir) == os.path.realpath(args.init_from):
            parser.error(f"--output_dir {args.output_dir!r} is the run --init_from starts from; "
                         "write the new run elsewhere")
    try:
        model_config(args, vocabulary_size=2, num_answers=2)  # Bad --k, --set etc.: fail fast.
    except ValueError as error:
        parser.error(str(error))
    warmup_type_ids(args)  # Before the dataset's build, which a typo would waste.
    folder = args.dataset[len(registry.FOLDER_PREFIX):]
    if args.dataset.startswith(registry.FOLDER_PREFIX) and not os.path.isdir(folder):
        # Before the run folder is made: it was left behind, holding only its marker.
        parser.error(f"--dataset {args.dataset}: {folder!r} is "
                     f"{'a file' if os.path.exists(folder) else 'no folder'}: expected a "
                     "folder of images and JSON Lines (datasets/vqa_folder/README.md)")
    return args


def model_config(args, vocabulary_size, num_answers):
    """The preset's ModelConfig with the flags and the dataset's sizes applied."""
    overrides = {}
    for item in args.model_fields:
        field, equals, text = item.partition("=")
        if not equals:
            raise ValueError(f"--set takes FIELD=VALUE, received {item!r}")
        if field.strip() in _SET_BY_FLAGS:
            raise ValueError(f"--set {field.strip()}=... is set by {_SET_BY_FLAGS[field.strip()]}; "
                             "use that instead")
        if field.strip() in overrides:  # The last would win without a word.
            raise ValueError(f"--set {field.strip()} is given twice; give it once")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text  # e.g. --set rnn=lstm
        overrides[field.strip()] = tuple(value) if isinstance(value, list) else value
    overrides.update(variant=args.variant, vocab_size=vocabulary_size, num_answers=num_answers)
    if args.k is not None:
        # Whole numbers are counts of cells, fractions shares of them.
        overrides["k"] = int(args.k) if args.k == int(args.k) else args.k
    if args.threshold is not None:
        overrides["threshold"] = args.threshold
    for name in ("fusion", "aggregation"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.min_cells is not None:
        overrides["min_cells"] = args.min_cells
    if args.k is not None and args.variant in ("soft", "none"):  # They keep every cell.
        raise ValueError(f"--k is HAN's and AdaHAN's; --variant {args.variant} keeps every "
                         "cell: drop --k")
    if (args.k is not None and args.variant == "adahan"  # k only sets AdaHAN's floor,
            and (args.min_cells or get_preset(args.preset).min_cells) is not None):  # if unset.
        raise ValueError("--k sets AdaHAN's floor where no --min_cells is set; "
                         f"{'--min_cells' if args.min_cells else f'the {args.preset} preset'} "
                         "sets it: pass --min_cells instead")
    for field in ("threshold", "min_cells", "max_cells"):  # Other variants would ignore them.
        if field in overrides and args.variant != "adahan":
            flag = f"--{field}" if field in _SET_BY_FLAGS else f"--set {field}"
            raise ValueError(f"{flag} is AdaHAN's; it needs --variant adahan, received "
                             f"--variant {args.variant}")
    return get_preset(args.preset, **overrides)


def learning_rate_schedule(args, steps_per_epoch):
    """Adam's learning rate: a float (constant) or a schedule over the run's steps."""
    if args.lr_schedule == "constant":
        return args.learning_rate
    # Follows optimizer.iterations, which the backup restores: a resumed run decays alike.
    return keras.optimizers.schedules.CosineDecay(
        args.learning_rate, decay_steps=args.epochs * steps_per_epoch)


# ModelConfig fields that a flag or the dataset sets; --set cannot set them.
_SET_BY_FLAGS = {"variant": "--variant", "k": "--k", "threshold": "--threshold",
                 "min_cells": "--min_cells", "fusion": "--fusion", "aggregation": "--aggregation",
                 "vocab_size": "the dataset", "num_answers": "the dataset"}


def main(argv=None):
    """Trains, saves and evaluates one run; returns the test metrics (None on a worker)."""
    args = parse_args(argv)
    # First of all: MultiWorkerMirroredStrategy must exist before TensorFlow runs an op.
    strategy = distribute.distribution_strategy(args.distribute)
    chief, chief_backup = distribute.become_worker_unless_chief(args, strategy)
    # Refusals come before the dataset is built.
    peers = (multiworker.lost_peers_explained() if args.distribute == "multiworker"
             else contextlib.nullcontext())
    with peers, run_files.prepare_run_dir(args) as folder:
        run_dir = folder.path
        source = load_init_run(args) if args.init_from else None
        warmup = warmup_type_ids(args)
        dataset = data.prepare_dataset(args.dataset, args.data_dir)
        if warmup:
            check_warmup_questions(dataset, args.warmup_types, warmup[0])
        keras.utils.set_random_seed(args.seed)
        vocabulary = training_vocabulary(args, run_dir, dataset, source)
        check_resumed_data(args, run_dir, dataset)
        config = model_config(args, vocabulary.size, len(dataset.answer_names))
        backup = AtomicBackupAndRestore(
            chief_backup or os.path.join(run_dir, "backup"),
            history_path=os.path.join(run_dir, run_files.HISTORY), read_only=not chief,
            monitor="val_loss" if args.restore_best_weights else None)  # Completed epochs.
        train_ds, val_ds, steps = input_pipelines(args, dataset, vocabulary, config, backup.epoch,
                                                  warmup)
        if args.distribute != "none":
            distribute.check_batch_split(dataset, args.batch_size, strategy.num_replicas_in_sync)
        args.dtype = training_dtype(args, run_dir)  # Before write_run_files records it.
        with strategy.scope(), dtype_policy(args.dtype):
            model = build_model(config)
            train_model = compiled_training_model(args, model, train_ds, steps)
        if source and backup.epoch == 0:  # A resumed run has its own weights.
            copy_weights(args.init_from, source, model, dataset.answer_names)
        check_resumed_model_config(args, run_dir, config)
        if not (args.resume and os.path.isfile(os.path.join(run_dir, run_files.MODEL))):
            # A finished run trained further keeps its config.json until `finish`: killed
            # before, its model.keras is still the one that file describes.
            write_run_files(args, run_dir, config, vocabulary, dataset)
        print(f"Training {args.variant} ({args.preset} preset, {model.count_params():,} "
              f"parameters) on {dataset.spec.title}: {dataset.num_examples('train')} images x "
              f"{questions_per_image(train_ds)} questions, {args.epochs} epochs -> {run_dir}")
        if keras.backend.backend() == "tensorflow":  # The FLOP counter reads a TF graph.
            print("  " + compute.describe(model, questions_per_image(train_ds)))
        history, seconds = fit(args, train_model, train_ds, val_ds, steps, backup, strategy, chief,
                               dataset)
        if not chief:  # Its scratch folder is removed when the process ends.
            print(f"Worker done: trained {len(history.epoch)} epochs in step with the chief")
            return None
        return finish(args, folder, model, train_model, backup, dataset, vocabulary, history,
                      seconds)


def warmup_type_ids(args):
    """`(type ids, epochs)` of --warmup_types and --warmup_epochs, or None; read from the
    dataset's builder, which knows its types before it is built."""
    if not args.warmup_types:
        return None
    spec = registry.get_dataset(args.dataset)
    names = spec.type_names(prepare.dataset_builder(spec, args.data_dir))
    for name in args.warmup_types:
        if name not in names:
            raise cli.UserError(f"--warmup_types: {name!r} is not a question type of "
                                f"{spec.title} ({', '.join(names)})")
    return [names.index(name) for name in args.warmup_types], args.warmup_epochs


def check_warmup_questions(dataset, names, type_ids):
    """Raises `UserError` naming each --warmup_types type that no training question has
    (a type of the test split only): its warm-up epochs would train on nothing."""
    found = set()
    for element in dataset.elements("train", decode_images=False).as_numpy_iterator():
        found.update(element["types"].tolist())
    missing = [name for name, type_id in zip(names, type_ids) if type_id not in found]
    if missing:
        raise cli.UserError(f"--warmup_types: no training question of {dataset.spec.title} "
                            f"has the type {', '.join(map(repr, missing))}; the warm-up "
                            "would train on nothing")


def input_pipelines(args, dataset, vocabulary, config, first_epoch, warmup=None):
    """`(train_ds, val_ds, steps_per_epoch)`. Epoch e's shuffle depends on (seed, e) only, so
    a run resumed at `first_epoch` sees the same batches as an uninterrupted one; `warmup`:
    `warmup_type_ids`."""
    data.check_question_lengths(dataset, config.max_question_length)
    pipeline = dict(dataset=dataset, vocabulary=vocabulary, image_size=config.image_size,
                    max_question_length=config.max_question_length, batch_size=args.batch_size)
    first_epoch = min(first_epoch, args.epochs)
    train_ds = data.training_batches(split="train", shuffle=True, seed=args.seed,
                                     epochs=(first_epoch, args.epochs), warmup=warmup,
                                     **pipeline)
    val_ds = data.training_batches(split="validation", **pipeline)
    return train_ds, val_ds, data.epoch_steps(dataset, "train", args.batch_size)


def questions_per_image(train_ds):
    """Q of the training batches `{"image", "questions" (B, Q, L)}`."""
    return train_ds.element_spec[0]["questions"].shape[1]


def compiled_training_model(args, model, train_ds, steps_per_epoch):
    """The model that encodes each image once for all its questions, compiled with Adam.

    Under a distribution strategy Keras splits each batch across the replicas and sums the
    gradients of the per-replica share of the mean loss: --batch_size is global.
    """
    train_model = build_training_model(model, questions_per_image(train_ds))
    accuracy = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    weighted = len(train_ds.element_spec) == 3  # Padded questions carry weight 0.
    train_model.compile(
        optimizer=keras.optimizers.Adam(learning_rate_schedule(args, steps_per_epoch)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=None if weighted else accuracy,
        weighted_metrics=accuracy if weighted else None,
    )
    # Built here, not inside fit's first trace: a variable created while tracing makes
    # TensorFlow trace the whole train step a second time (seconds, on every run).
    train_model.optimizer.build(train_model.trainable_variables)
    return train_model


def check_resumed_model_config(args, run_dir, config):
    """`--resume` must build the model config the run was saved with."""
    if args.resume and os.path.exists(os.path.join(run_dir, run_files.CONFIG)):
        differ = config_differences(run_files.saved_settings(run_dir, "model"), config)
        if differ:
            raise cli.UserError(f"--resume: {run_dir!r} was trained with another model "
                                f"config: {', '.join(differ)}; resume with the command that "
                                "started it")


def write_run_files(args, run_dir, config, vocabulary, dataset):
    """The run's files (`run_files.write_run_files`), with what it records of its training
    split (`Dataset.training_data`, which `check_resumed_data` compares)."""
    run_files.write_run_files(run_dir, config, vars(args), vocabulary, dataset.answer_names,
                              data=dataset.training_data)


def settings_differences(run_dir, argv):
    """`"setting saved (asked value)"` for each training setting of the run in `run_dir` that
    the trainer command line `argv` would set otherwise; where the run lives and how it
    starts do not count. For scripts that reuse finished runs."""
    saved = run_files.saved_settings(run_dir)
    asked = json.loads(json.dumps(vars(parse_args(argv))))  # Tuples as JSON's lists.
    ignored = {"output_dir", "data_dir", "resume", "overwrite", "debug"}
    if asked["dtype"] == "auto":  # The run saved what auto chose.
        ignored.add("dtype")
    return [f"{key} {saved[key]!r} (asked {value!r})" for key, value in asked.items()
            if key in saved and key not in ignored and saved[key] != value]


def settings_set_by(flags):
    """The trainer settings that `flags` set, however spelt (`--seed=1`, an abbreviation):
    each flag's name (`--seed`), and `--set FIELD` for each `--set FIELD=VALUE`."""
    unset = object()  # Not a string: argparse would parse a string default as a value.
    parser = argument_parser()
    names = set(vars(parser.parse_args([]))) - {"model_fields"}  # --set appends to a list.
    parser.set_defaults(**{name: unset for name in names})
    given = parser.parse_known_args(flags)[0]
    fields = [item.partition("=")[0].strip() for item in given.model_fields]
    return ({f"--{name}" for name in names if getattr(given, name) is not unset}
            | {f"--set {field}" for field in fields})


def check_flags_passed_on(flags, own_flags, overridable=()):
    """For scripts that run the trainer with their `own_flags` and then the user's `flags`:
    `cli.UserError` if `flags` set what `own_flags` set (the last flag wins, so the script
    would report a run it did not ask for), `overridable` aside; then the whole command
    line's own refusals (a flag the run's variant ignores), before any run trains."""
    clash = sorted((settings_set_by(flags) & settings_set_by(own_flags)) - set(overridable))
    if clash:
        raise cli.UserError(f"the flags after -- set {', '.join(clash)}, which this script "
                            "sets for that run itself: use the script's own flags")
    parse_args([*own_flags, *flags])


def load_init_run(args):
    """The run of --init_from, refused (before any dataset is built) unless it is the model
    these flags build."""
    try:
        source = run_files.load_run(args.init_from)
    except (OSError, ValueError) as error:
        raise cli.UserError(f"--init_from: {error}") from None
    config = model_config(args, source.vocabulary.size, source.model.config.num_answers)
    differ = config_differences(source.config["model"], config)
    if differ:
        raise cli.UserError(f"--init_from: {args.init_from!r} has another model config: "
                            f"{', '.join(differ)}; build this run with the same flags")
    return source


def training_vocabulary(args, run_dir, dataset, source):
    """The word ids the run trains with: a resumed run's own, else --init_from's (its
    embedding rows are by id), else the dataset's words in order of first appearance, an
    order that differs between datasets with the same words."""
    saved = os.path.join(run_dir, run_files.VOCABULARY)
    if args.resume and os.path.exists(saved):
        try:
            vocabulary, whose = Vocabulary.load(saved), f"{run_dir!r}'s"
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise cli.UserError(f"--resume: {saved!r} is not a vocabulary ({error})") from None
    elif source:
        vocabulary, whose = source.vocabulary, f"--init_from {args.init_from!r}'s"
    else:
        return data.build_vocabulary(dataset)
    missing = set(data.build_vocabulary(dataset).words) - set(vocabulary.words)
    if missing:
        raise cli.UserError(f"{dataset.spec.title}'s questions hold words that {whose} "
                            f"vocabulary lacks: {', '.join(sorted(missing))}")
    return vocabulary


def check_resumed_data(args, run_dir, dataset):
    """A resumed run trains on the data it began with, and answers with its own labels in
    their order: its weights give each id its name (a folder whose answers were edited
    since would relabel them without a word; one whose training lines changed would
    continue on other images, a cosine schedule sized to the old count)."""
    saved = os.path.join(run_dir, run_files.ANSWERS)
    if not (args.resume and os.path.exists(saved)):
        return
    try:
        trained = run_files.read_json(saved)["answers"]
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise cli.UserError(f"--resume: {saved!r} is not an answers file ({error})") from None
    now = list(dataset.answer_names)
    if trained != now:
        gone, new = [a for a in trained if a not in now], [a for a in now if a not in trained]
        differ = (f"{gone[:8]} no longer, {new[:8]} new" if gone or new
                  else "the same answers in another order")
        raise cli.UserError(
            f"--resume: {run_dir!r} was trained on other answers than {dataset.spec.title} "
            f"gives now ({differ}); resume it on the data it was trained on, or train a new "
            "run into another --output_dir")
    recorded = run_files.read_json(os.path.join(run_dir, run_files.CONFIG)).get("data")
    if not isinstance(recorded, dict):  # Runs before 2026-12 have none.
        return
    now = dataset.training_data
    counts = ("train_images", "train_questions")
    if any(recorded.get(key) != now.get(key) for key in counts):
        change = (f"{recorded.get('train_images')} images, {recorded.get('train_questions')} "
                  f"questions; now {now['train_images']}, {now['train_questions']}")
    elif recorded.get("train_digest", now.get("train_digest")) != now.get("train_digest"):
        change = "as many images and questions, but other lines or images"
    else:
        return
    raise cli.UserError(
        f"--resume: {run_dir!r} was trained on another training split of "
        f"{dataset.spec.title} ({change}); resume it on the data it was trained on, or "
        "train a new run into another --output_dir")


def copy_weights(path, source, model, answers):
    """Copies the weights of the run `source` (loaded from `path`) into `model`, which
    answers with the same labels in the same order."""
    if source.answers != list(answers):
        raise cli.UserError(f"--init_from: {path!r} answers {source.answers}; this dataset "
                            f"answers {list(answers)}")
    try:
        model.set_weights(source.model.get_weights())
    except ValueError as error:  # Saved by other code with the same config.
        raise cli.UserError(f"--init_from: {path!r}'s weights do not fit this model "
                            f"({error})") from None
    print(f"Initialized from the weights of {path!r}")


def worker_settings(args, dataset):
    """What every worker of --distribute multiworker must train with: the chief's flags but
    where its files are, and its training data (a folder's by its content, wherever each
    machine keeps it)."""
    flags = {key: value for key, value in vars(args).items()
             if key not in ("output_dir", "data_dir", "resume", "overwrite", "debug",
                            "init_from", "dataset")}
    flags["model_fields"] = sorted(flags.get("model_fields") or [])  # --set in any order.
    flags["data"] = dataset.training_data.get("train_digest", dataset.spec.name)
    return json.dumps(flags, sort_keys=True, default=str)


def fit(args, train_model, train_ds, val_ds, steps_per_epoch, backup, strategy, chief, dataset):
    """Runs `fit` (or the multi-worker loop) from the backup's epoch; `(history, seconds)`.

    The backup saves weights, optimizer state, epoch and history.csv after every epoch and
    restores them at the start (see keras_adahan.backup). A NaN loss ends the run here.
    """
    first_epoch = min(backup.epoch, args.epochs)
    start = time.time()
    settings = dict(epochs=args.epochs, initial_epoch=first_epoch,
                    callbacks=[backup, keras.callbacks.TerminateOnNaN()],
                    steps_per_epoch=steps_per_epoch,
                    verbose=(1 if sys.stdout.isatty() else 2) if chief else 0)
    if args.distribute == "multiworker":  # Keras 3.15's fit fails under this strategy.
        history = multiworker.fit(train_model, train_ds, val_ds, strategy=strategy,
                                  settings=worker_settings(args, dataset), **settings)
    else:
        history = train_model.fit(train_ds, validation_data=val_ds, **settings,
                                  shuffle=False)  # The pipeline shuffles (data.training_batches).
    seconds = time.time() - start
    # TerminateOnNaN stops on a NaN training loss, the backup on a NaN validation loss.
    bad = [name for name, values in history.history.items()
           if not all(math.isfinite(v) for v in values)]
    if bad:
        epoch = first_epoch + min(i for name in bad for i, v in enumerate(
            history.history[name]) if not math.isfinite(v)) + 1
        kept = (f"the last good epoch ({backup.epoch}) is kept in {backup.backup_dir}"
                if backup.epoch else "no epoch completed")
        raise cli.UserError(f"the loss became NaN in epoch {epoch} ({', '.join(bad)}); "
                            f"lower --learning_rate. No model.keras was written; {kept}.")
    return history, seconds


def training_dtype(args, run_dir):
    """--dtype, with "auto" resolved (and said why): float32 under multiworker, a resumed
    run's own, else measured here."""
    if args.dtype != "auto":
        return args.dtype
    if args.distribute == "multiworker":  # Each worker would measure (or resume) its own.
        print("--dtype auto: float32 (the workers of --distribute multiworker do not measure "
              "apart; pass --dtype mixed_bfloat16 to train in bfloat16)")
        return "float32"
    if args.resume and os.path.exists(os.path.join(run_dir, run_files.CONFIG)):
        dtype = run_files.saved_settings(run_dir).get("dtype", "float32")
        if dtype not in DTYPES[1:]:
            raise cli.UserError(f"--resume: {run_dir!r}'s config.json has dtype {dtype!r}, "
                                f"not one of {', '.join(DTYPES[1:])}; pass --dtype")
        print(f"--dtype auto: {dtype}, as the run being resumed")
        return dtype
    chosen, speedup = compute.auto_dtype()
    if speedup is None:
        print("--dtype auto: float32 (a bfloat16 matmul could not run here)")
    else:
        print(f"--dtype auto: {chosen} (a bfloat16 matmul runs at {speedup:.2f}x float32's "
              f"FLOP/s here; mixed_bfloat16 from {compute.BFLOAT16_SPEEDUP}x; pass --dtype "
              "to choose)")
    return chosen


@contextlib.contextmanager
def dtype_policy(name):
    """Layers built inside take the Keras dtype policy `name`; float32 again after."""
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy("float32")


def float32_model(model):
    """`model` if it computes in float32, else a float32 `VQAModel` with its weights: what
    is saved, evaluated and exported does not depend on --dtype (the weights of a mixed
    policy are float32 already)."""
    if model.dtype_policy.name == "float32":
        return model
    copy = build_model(model.config)
    copy.set_weights(model.get_weights())
    return copy


def finish(args, folder, model, train_model, backup, dataset, vocabulary, history, seconds):
    """Keeps the best epoch's weights, saves model.keras and training.json, plots the
    history, evaluates on the test split; then the run folder is complete (`commit`)."""
    run_dir = folder.path
    best = backup.restore_best(train_model) if args.restore_best_weights else None
    if best:
        print(f"Restored the weights of epoch {best['epoch']}, the lowest validation loss "
              f"({best['value']:.4f})")
    model = float32_model(model)
    split = dataset.spec.evaluation_split
    with run_files.atomic_path(os.path.join(run_dir, run_files.MODEL)) as tmp:
        model.save(tmp)
        if args.distribute != "none":
            # A model built under MirroredStrategy answers `predict_on_batch` with one copy
            # of the outputs per replica (Keras 3.15): evaluate a single-device copy.
            model = keras.models.load_model(tmp)
        # Evaluated before the file is committed: a run whose losses stayed finite (so `fit`
        # saw no NaN) can still answer NaN; it leaves no model.keras.
        try:
            evaluation = evaluate.evaluate(model, dataset, vocabulary, split=split)
        except evaluate.NonFiniteAnswersError:
            raise cli.UserError(
                f"training diverged: the model's answers on the {split} split are not finite "
                "(NaN or infinite); lower --learning_rate. No model.keras was written."
            ) from None
    write_run_files(args, run_dir, model.config, vocabulary, dataset)  # This model's.
    epochs_history = read_history(os.path.join(run_dir, run_files.HISTORY))
    kept_epoch = best["epoch"] if best else len(epochs_history["val_accuracy"])
    training = {
        "seconds": round(seconds, 1),
        "questions_per_second": round(
            len(history.epoch) * dataset.num_questions("train") / seconds, 1),
        "kept_epoch": kept_epoch,
        # Every epoch of the run, the ones before a --resume included (None: not recorded).
        "seconds_all_epochs": None if backup.seconds is None else round(backup.seconds, 1),
    }
    training_path = os.path.join(run_dir, run_files.TRAINING)
    if not history.epoch and os.path.isfile(training_path):  # A finished run evaluated
        try:                                                  # again: its timing stays.
            earlier = run_files.read_json(training_path)
            training.update({key: earlier[key] for key in ("seconds", "questions_per_second")})
        except (OSError, ValueError, TypeError, KeyError):
            pass
    run_files.write_json(training_path, training)
    os.makedirs(os.path.join(run_dir, "plots"), exist_ok=True)
    plots.plot_history(epochs_history, os.path.join(run_dir, "plots", "history.png"))
    evaluate.write_evaluation(evaluation, run_dir)
    print()
    print(evaluate.format_summary(evaluation.metrics, f"{split.capitalize()} split of "
                                                      f"{dataset.spec.title}"))
    if best and split == "validation":  # CLEVR: its test split has no answers.
        print(f"  (the validation split also chose the kept epoch, {best['epoch']}: these "
              "figures lean optimistic; --no-restore_best_weights keeps the last epoch and "
              "leaves the split unseen)")
    for name in dataset.spec.also_report_on:  # E.g. classic_open's runs on classic.
        other = data.prepare_dataset(name, args.data_dir)
        evaluation = evaluate.evaluate(model, other, vocabulary, answers=dataset.answer_names)
        evaluate.write_evaluation(evaluation, run_dir)
        print(evaluate.format_summary(evaluation.metrics, f"Test split of {other.spec.title} "
                                                          f"(metrics_{name}.json)"))
    print(f"  trained {len(history.epoch)} epochs in {seconds:.0f} s "
          f"({training['questions_per_second']:.0f} questions/s); kept epoch "
          f"{kept_epoch}: validation accuracy {epochs_history['val_accuracy'][kept_epoch - 1]:.2%}")
    folder.commit()
    print(f"  run folder          {folder.path}  (model.keras, metrics.json, plots/)")
    return evaluation.metrics


def read_history(path):
    """history.csv as a dict of per-epoch lists (covers resumed runs too)."""
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {key: [float(r[key]) for r in rows] for key in rows[0] if key != "epoch"}


if __name__ == "__main__":
    cli.run(main)
