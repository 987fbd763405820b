"""Training on several devices (`--distribute mirrored`) or machines (`multiworker`).

`distribution_strategy` must run before TensorFlow runs an op (MultiWorkerMirroredStrategy
requires it). Under a strategy Keras splits each batch across the replicas and sums the
gradients of the per-replica share of the mean loss: `--batch_size` is global.
"""

import atexit
import os
import shutil
import tempfile

import tensorflow as tf

from keras_adahan import cli
from keras_adahan import multiworker


def distribution_strategy(name):
    """The `tf.distribute` strategy of `--distribute NAME`."""
    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
        print(f"MirroredStrategy over {strategy.num_replicas_in_sync} replicas: "
              f"{', '.join(strategy.extended.worker_devices)}")
        return strategy
    if name == "multiworker":
        return multiworker.multi_worker_strategy()
    return tf.distribute.get_strategy()  # The default, single-device strategy.


def check_batch_split(dataset, batch_size, replicas):
    """Every replica must get a share of every batch, and full batches equal shares.

    Keras 3.15's `fit` under MirroredStrategy averages the first batch across replicas to
    build the model and fails on unequal shares; an empty share (a last batch smaller
    than the number of replicas) fails in batch normalization, under either strategy.
    """
    sizes = {split: dataset.num_examples(split) for split in ("train", "validation")}
    last = {split: n % batch_size for split, n in sizes.items()}
    if batch_size % replicas or any(0 < r < replicas for r in last.values()):
        raise cli.UserError(
            f"--batch_size {batch_size} does not split across {replicas} replicas: it "
            f"must be a multiple of {replicas}, and the last batch of each split must hold "
            f"at least {replicas} images (split sizes {sizes})")


def become_worker_unless_chief(args, strategy):
    """`(chief, chief_backup)`. A worker other than the chief trains in step with it and
    writes into a scratch folder (deleted at the end), resuming from the chief's backup."""
    if multiworker.is_chief(strategy):
        return True, None
    chief_backup = os.path.join(args.output_dir, "backup") if args.resume else None
    args.output_dir, args.resume = tempfile.mkdtemp(prefix="keras_adahan_worker_"), False
    atexit.register(shutil.rmtree, args.output_dir, ignore_errors=True)  # Failed, too.
    return False, chief_backup
