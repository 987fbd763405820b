"""Training across machines: `python -m keras_adahan.train --distribute multiworker`.

`model.fit` fails under `tf.distribute.MultiWorkerMirroredStrategy` in Keras 3.15 (keras
issues 20329 and 20585, tensorflow issue 72388): it first all-reduces a data batch to
build the model (`Trainer._maybe_symbolic_build`: "Attempt to convert a value
(PerReplica...)"), then reduces scalar metrics along an axis they do not have
(`reduce_per_replica`). What does work under that strategy is a Keras model and a Keras
optimizer driven by a loop of our own, `strategy.run` per step. `fit` below is that loop,
with `model.fit`'s callback protocol, so the trainer's callbacks (the backup, NaN stop,
progress) work unchanged.

Every worker runs the same command with its own `TF_CONFIG`, e.g. on two machines:

```
TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
            "task": {"type": "worker", "index": 0}}' \\
python -m keras_adahan.train --distribute multiworker --output_dir /shared/run
```

(index 1 on the second machine). Worker 0 is the chief: it alone writes the run folder.
The others write into a scratch folder they delete at the end, and with `--resume` they
restore the chief's backup, so `--output_dir` must be a folder every worker can read
(`check_workers_agree` stops them all if they start apart).
"""

import contextlib
import json
import os
import zlib

import tensorflow as tf

import keras

from keras_adahan import cli

TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')


def multi_worker_strategy():
    """A `MultiWorkerMirroredStrategy` from `TF_CONFIG` (`check_tf_config`)."""
    check_tf_config(os.environ.get("TF_CONFIG"))
    # Collective ops must be set up before TensorFlow runs anything: create this first.
    return tf.distribute.MultiWorkerMirroredStrategy()


def check_tf_config(text):
    """Raises `ValueError` naming TF_CONFIG unless it places this process as a chief or
    worker task of its cluster: TensorFlow's own errors name no variable or come as
    tracebacks, an empty one trains alone, and an evaluator task trained a run alone."""
    if not text:
        raise ValueError("--distribute multiworker needs the TF_CONFIG environment variable "
                         f"(cluster and task of this worker), e.g. {TF_CONFIG_EXAMPLE}")
    try:
        config = json.loads(text)
    except ValueError as error:
        raise ValueError(f"TF_CONFIG is not JSON ({error}); expected e.g. "
                         f"{TF_CONFIG_EXAMPLE}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not cluster or not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ValueError(f'TF_CONFIG must hold a "cluster" and a "task", e.g. '
                         f"{TF_CONFIG_EXAMPLE}; received {text}")
    for kind, hosts in cluster.items():
        if not isinstance(hosts, list) or not hosts or not all(isinstance(host, str)
                                                               for host in hosts):
            raise ValueError(f'TF_CONFIG\'s cluster "{kind}" must be a list of "host:port" '
                             f"strings; received {json.dumps(hosts)}")
    kind, index = task.get("type"), str(task.get("index"))  # TensorFlow reads "1" as 1.
    trains = sorted(set(cluster) & {"chief", "worker"})
    if kind not in trains or not index.isdigit() or int(index) >= len(cluster[kind]):
        raise ValueError(f'TF_CONFIG\'s task must be one of its cluster\'s tasks that train: '
                         f'"type" one of {", ".join(trains) or "chief, worker"} and "index" 0 '
                         f"to one less than its hosts; received {json.dumps(task)}")


@contextlib.contextmanager
def lost_peers_explained():
    """A worker whose peer stopped (a chief that refused its folder, a worker that failed or
    was killed) or cannot be reached gets TensorFlow's `UnavailableError` from whichever
    collective it was in ("Collective ops is aborted by: Socket closed", after the op's
    name, or below "Graph execution error:" in a step): one line that says what happened."""
    try:
        yield
    except tf.errors.UnavailableError as error:
        lines = [line.split("}} ")[-1].strip() for line in error.message.splitlines()]
        cause = next((line for line in lines if "abort" in line.lower()),
                     next((line for line in reversed(lines) if line), "unavailable"))
        raise cli.UserError(
            "--distribute multiworker: could not reach or lost contact with another worker "
            "of TF_CONFIG's cluster (it stopped, failed or was killed: its own output says "
            f"why); start every worker again, with --resume to continue ({cause})") from error


def is_chief(strategy):
    """Whether this worker writes the run folder: the `chief` task, or worker 0 without one."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def shard_by_data(dataset):
    """Each worker takes its share of every global batch (not whole files): every worker
    then runs the same number of steps per epoch, whatever the number of TFRecord files."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return dataset.with_options(options)


def fit(model, train_ds, val_ds, epochs, initial_epoch, steps_per_epoch, callbacks,
        strategy, verbose=2, settings=""):
    """Trains `model` (compiled in `strategy.scope()`) like `model.fit`; returns its History.

    The loss of a step is the mean over every question of the global batch, whichever
    replica holds it (the per-replica sums are all-reduced), so a step equals a one-device
    step on the same batch. Logs `loss`, `accuracy`, `val_loss`, `val_accuracy`.

    Args:
        model: a compiled Keras model whose outputs are answer logits `(B, Q, A)`.
        train_ds: `tf.data.Dataset` of global batches `(inputs, labels (B, Q))`, or
            `(inputs, labels, loss weights (B, Q))` (padded questions, a warm-up), holding
            epochs `initial_epoch` to `epochs - 1` back to back.
        val_ds: `tf.data.Dataset` of one validation pass, or None.
        epochs, initial_epoch, steps_per_epoch: int. As in `model.fit`.
        callbacks: list of Keras callbacks.
        strategy: the `tf.distribute.Strategy` `model` was built under.
        verbose: int. 0 silent, 1 progress bar, 2 one line per epoch.
        settings: str. What every worker must train with, compared before the first step
            (`check_workers_agree`).
    """
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    optimizer = model.optimizer
    with strategy.scope():
        # Built in the scope, so its slots are mirrored; a restored backup fills them.
        optimizer.build(model.trainable_variables)

    def sums(labels, outputs, weights=None):
        """As `fit`'s weighted loss and metric: the loss is the weighted sum over every
        question slot divided by their count (Keras's `sum_over_batch_size`), the accuracy
        divided by the weights."""
        weights = tf.ones(tf.shape(labels)) if weights is None else tf.cast(weights, tf.float32)
        # A SoftHeadTrainingModel (keras_adahan.model) also answers from its soft head.
        logits, soft_logits = outputs if isinstance(outputs, (list, tuple)) else (outputs, None)
        per_question = loss_fn(labels, logits) * weights  # (B, Q)
        loss_sum = tf.reduce_sum(per_question)
        if soft_logits is not None:
            loss_sum += model.soft_head_weight * tf.reduce_sum(
                loss_fn(labels, soft_logits) * weights)
        predicted = tf.argmax(logits, axis=-1, output_type=labels.dtype)
        correct = tf.cast(tf.equal(predicted, labels), tf.float32) * weights
        count = tf.cast(tf.size(per_question), tf.float32)
        return loss_sum, tf.reduce_sum(correct), count, tf.reduce_sum(weights)

    def train_replica(inputs, labels, weights=None):
        context = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            totals = sums(labels, model(inputs, training=True), weights)
            # The optimizer sums gradients over replicas: divide by the global count.
            loss = totals[0] / tf.maximum(context.all_reduce("SUM", totals[2]), 1.0)
            if model.losses:
                loss += tf.add_n(model.losses) / strategy.num_replicas_in_sync
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return totals

    def test_replica(inputs, labels, weights=None):
        return sums(labels, model(inputs, training=False), weights)

    def reduced(replica_fn):
        @tf.function
        def step(*batch):
            per_replica = strategy.run(replica_fn, args=batch)
            return [strategy.reduce("SUM", value, axis=None) for value in per_replica]

        return step

    train_step, test_step = reduced(train_replica), reduced(test_replica)
    train_iterator = iter(strategy.experimental_distribute_dataset(shard_by_data(train_ds)))
    val_dist = (strategy.experimental_distribute_dataset(shard_by_data(val_ds))
                if val_ds is not None else None)

    callbacks = keras.callbacks.CallbackList(
        callbacks, add_history=True, add_progbar=verbose != 0, verbose=verbose,
        epochs=epochs, steps=steps_per_epoch, model=model)
    model.stop_training = False
    callbacks.on_train_begin()  # The backup restores its epoch's weights here.
    check_workers_agree(strategy, model, epochs, initial_epoch, steps_per_epoch, settings)
    logs = {}
    for epoch in range(initial_epoch, epochs):
        callbacks.on_epoch_begin(epoch)
        totals = [0.0, 0.0, 0.0, 0.0]  # loss sum, correct answers, questions, weights
        for step in range(steps_per_epoch):
            callbacks.on_train_batch_begin(step)
            totals = [t + float(v) for t, v in zip(totals, train_step(*next(train_iterator)))]
            logs = {"accuracy": ratio(totals[1], totals[3]),
                    "loss": ratio(totals[0], totals[2])}
            callbacks.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        if val_dist is not None:
            val = [0.0, 0.0, 0.0, 0.0]
            for batch in val_dist:
                val = [t + float(v) for t, v in zip(val, test_step(*batch))]
            logs = {**logs, "val_accuracy": ratio(val[1], val[3]),
                    "val_loss": ratio(val[0], val[2])}
        callbacks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callbacks.on_train_end(logs)
    return next(c for c in callbacks.callbacks if isinstance(c, keras.callbacks.History))


def check_workers_agree(strategy, model, epochs, initial_epoch, steps_per_epoch, settings=""):
    """Raises `ValueError` on every worker unless all start from the same epoch and weights
    and run the same epochs and steps with the same `settings`. A worker started without
    `--resume`, or whose `--output_dir` is not the chief's (so it restored nothing), would
    otherwise wait for steps the others never run, or add its gradients to theirs from
    other weights; one with another learning rate would apply the summed gradients its own
    way, and the workers' weights part."""
    # The weights' bits, summed as integers: equal whatever order a machine sums in.
    bits = [tf.reduce_sum(tf.cast(tf.bitcast(v, tf.int32), tf.int64))
            for v in model.trainable_variables if v.dtype == tf.float32]
    local = tf.stack([tf.constant(initial_epoch, tf.int64), tf.constant(epochs, tf.int64),
                      tf.constant(steps_per_epoch, tf.int64), tf.add_n(bits),
                      tf.constant(zlib.crc32(settings.encode("utf-8")), tf.int64)])

    @tf.function
    def gather(value):
        return strategy.gather(strategy.run(lambda: value[tf.newaxis]), axis=0)

    replicas = gather(local).numpy()  # One row per replica (a worker may hold several).
    names = ("epochs done", "--epochs", "steps per epoch")
    differ = [f"{name}: {', '.join(str(v) for v in dict.fromkeys(replicas[:, i].tolist()))}"
              for i, name in enumerate(names) if len(set(replicas[:, i])) > 1]
    if len(set(replicas[:, 4])) > 1:
        differ.append("the training flags")
    if not differ and len(set(replicas[:, 3])) > 1:
        differ = ["the weights they start from"]
    if differ:
        raise ValueError("--distribute multiworker: the workers do not start from the same "
                         f"point ({'; '.join(differ)}): run every worker with the same flags, "
                         "--resume on all or none, and an --output_dir they all read (the "
                         "chief's backup)")


def ratio(total, count):
    """`total / count`, 0 for no count (as Keras's metrics: a batch of weight 0)."""
    return total / count if count else 0.0
