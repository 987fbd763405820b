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
restore the chief's backup, so `--output_dir` must be a folder every worker can read.
"""

import tensorflow as tf

import keras


def multi_worker_strategy():
    """A `MultiWorkerMirroredStrategy` from `TF_CONFIG`; raises if it is unset."""
    import os

    if not os.environ.get("TF_CONFIG"):
        raise ValueError(
            "--distribute multiworker needs the TF_CONFIG environment variable (cluster "
            "and task of this worker); see keras_adahan/multiworker.py"
        )
    # Collective ops must be set up before TensorFlow runs anything: create this first.
    return tf.distribute.MultiWorkerMirroredStrategy()


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
        strategy, verbose=2):
    """Trains `model` (compiled in `strategy.scope()`) like `model.fit`; returns its History.

    The loss of a step is the mean over every question of the global batch, whichever
    replica holds it (the per-replica sums are all-reduced), so a step equals a one-device
    step on the same batch. Logs `loss`, `accuracy`, `val_loss`, `val_accuracy`.

    Args:
        model: a compiled Keras model whose outputs are answer logits `(B, Q, A)`.
        train_ds: `tf.data.Dataset` of global batches `(inputs, labels (B, Q))`, holding
            epochs `initial_epoch` to `epochs - 1` back to back.
        val_ds: `tf.data.Dataset` of one validation pass, or None.
        epochs, initial_epoch, steps_per_epoch: int. As in `model.fit`.
        callbacks: list of Keras callbacks.
        strategy: the `tf.distribute.Strategy` `model` was built under.
        verbose: int. 0 silent, 1 progress bar, 2 one line per epoch.
    """
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    optimizer = model.optimizer
    with strategy.scope():
        # Built in the scope, so its slots are mirrored; a restored backup fills them.
        optimizer.build(model.trainable_variables)

    def sums(labels, outputs):
        # A SoftHeadTrainingModel (keras_adahan.model) also answers from its soft head.
        logits, soft_logits = outputs if isinstance(outputs, (list, tuple)) else (outputs, None)
        per_question = loss_fn(labels, logits)  # (B, Q)
        loss_sum = tf.reduce_sum(per_question)
        if soft_logits is not None:
            loss_sum += model.soft_head_weight * tf.reduce_sum(loss_fn(labels, soft_logits))
        predicted = tf.argmax(logits, axis=-1, output_type=labels.dtype)
        correct = tf.cast(tf.equal(predicted, labels), tf.float32)
        count = tf.cast(tf.size(per_question), tf.float32)
        return loss_sum, tf.reduce_sum(correct), count

    def train_replica(inputs, labels):
        context = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            loss_sum, correct, count = sums(labels, model(inputs, training=True))
            # The optimizer sums gradients over replicas: divide by the global count.
            loss = loss_sum / tf.maximum(context.all_reduce("SUM", count), 1.0)
            if model.losses:
                loss += tf.add_n(model.losses) / strategy.num_replicas_in_sync
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss_sum, correct, count

    def test_replica(inputs, labels):
        return sums(labels, model(inputs, training=False))

    def reduced(replica_fn):
        @tf.function
        def step(inputs, labels):
            per_replica = strategy.run(replica_fn, args=(inputs, labels))
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
    callbacks.on_train_begin()
    logs = {}
    for epoch in range(initial_epoch, epochs):
        callbacks.on_epoch_begin(epoch)
        totals = [0.0, 0.0, 0.0]  # loss sum, correct answers, questions
        for step in range(steps_per_epoch):
            callbacks.on_train_batch_begin(step)
            inputs, labels = next(train_iterator)
            totals = [t + float(v) for t, v in zip(totals, train_step(inputs, labels))]
            logs = {"accuracy": totals[1] / totals[2], "loss": totals[0] / totals[2]}
            callbacks.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        if val_dist is not None:
            val = [0.0, 0.0, 0.0]
            for inputs, labels in val_dist:
                val = [t + float(v) for t, v in zip(val, test_step(inputs, labels))]
            logs = {**logs, "val_accuracy": val[1] / val[2], "val_loss": val[0] / val[2]}
        callbacks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callbacks.on_train_end(logs)
    return next(c for c in callbacks.callbacks if isinstance(c, keras.callbacks.History))
