"""Training under `--distribute mirrored` (two logical CPUs) and `multiworker` (localhost).

The mirrored test runs in a fresh Python process: the logical devices must be configured
before TensorFlow initializes its devices, which the test process has already done (the
way Keras' own distribution tests run). The multi-worker test starts two trainer
processes, a cluster of two workers on localhost described by TF_CONFIG.
"""

import json
import os
import re
import socket
import subprocess
import sys
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_adahan import cli
from keras_adahan import data
from keras_adahan import multiworker
from keras_adahan import run_files
from keras_adahan import train

EPOCHS = 15

SCRIPT = r'''
import json, os, sys
import tensorflow as tf

# Two logical CPU devices, set before TensorFlow initializes them (as Keras' tests do).
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import h5py
from keras_adahan import data, run_files, train

data_dir, out_dir, epochs = sys.argv[1], sys.argv[2], sys.argv[3]
result = {}

# The input pipeline as Keras distributes it: each global batch split across replicas.
dataset = data.prepare_dataset("tiny", data_dir)
vocabulary = data.build_vocabulary(dataset)
batches = data.training_batches(dataset, "train", vocabulary, 64, 12, batch_size=4,
                                epochs=(0, 1))
strategy = tf.distribute.MirroredStrategy()
first = next(iter(strategy.experimental_distribute_dataset(batches)))
result["replica_batch_sizes"] = [
    int(t.shape[0]) for t in strategy.experimental_local_results(first[0]["image"])]

for name, extra in (("one_device", []), ("mirrored", ["--distribute", "mirrored"])):
    run_dir = os.path.join(out_dir, name)
    metrics = train.main(["--dataset", "tiny", "--data_dir", data_dir, "--output_dir", run_dir,
                          "--epochs", epochs, "--batch_size", "4", "--seed", "0", *extra])
    history = train.read_history(os.path.join(run_dir, run_files.HISTORY))
    state = run_files.read_json(os.path.join(run_dir, "backup", "state.json"))
    with h5py.File(os.path.join(run_dir, "backup", state["weights"]), "r") as f:
        step = int(f["optimizer"]["vars"]["0"][()])
    result[name] = dict(accuracy=history["accuracy"][-1], loss=history["loss"][-1],
                        first_loss=history["loss"][0], step=step,
                        test_accuracy=metrics["accuracy"])
try:  # An odd batch cannot be split evenly over two replicas: refused up front.
    train.main(["--dataset", "tiny", "--data_dir", data_dir, "--batch_size", "3",
                "--output_dir", os.path.join(out_dir, "odd"), "--distribute", "mirrored"])
except SystemExit as error:
    result["odd_batch_error"] = str(error)
print("RESULT " + json.dumps(result))
'''


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tfds"))
    data.prepare_dataset("tiny", path)
    return path


def test_mirrored_on_two_cpus_matches_one_device(data_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, data_dir, str(tmp_path), str(EPOCHS)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "MirroredStrategy over 2 replicas" in result.stdout
    line = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])

    # --batch_size is global: a batch of 4 images reaches each replica as 2, and an
    # epoch takes as many optimizer steps as on one device (8 images / 4 = 2).
    assert result["replica_batch_sizes"] == [2, 2]
    one, two = result["one_device"], result["mirrored"]
    assert one["step"] == two["step"] == EPOCHS * 2
    # Both learn the training split to the same band. Not bit-equal: batch norm takes
    # its statistics per replica, and tf.distribute's rewrite of the input pipeline
    # changes the shuffle order within each epoch.
    for run in (one, two):  # The training loss falls by over a third (to ~0.43 here).
        assert run["loss"] <= 0.65 * run["first_loss"], result
    assert abs(one["accuracy"] - two["accuracy"]) <= 0.25, result
    assert "--batch_size 3 does not split across 2 replicas" in result["odd_batch_error"]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_workers(data_dir, run_dir, *extra, chief_extra=(), worker_extra=(), succeed=True):
    """Runs the trainer as worker 0 (the chief, with `chief_extra` too) and worker 1 (with
    `worker_extra`) of a localhost cluster; returns their outputs (and exit statuses unless
    `succeed`)."""
    workers = [f"localhost:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "keras_adahan.train", "--dataset", "tiny", "--data_dir",
             data_dir, "--output_dir", run_dir, "--batch_size", "4", "--distribute",
             "multiworker", *extra, *(chief_extra if index == 0 else worker_extra)],
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_CONFIG": json.dumps(tf_config)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        outputs = [p.communicate(timeout=300)[0] for p in processes]
    finally:
        for p in processes:  # A worker left alone would wait for its peer forever.
            if p.poll() is None:
                p.kill()
    if not succeed:
        return outputs, [p.returncode for p in processes]
    for p, output in zip(processes, outputs):
        assert p.returncode == 0, output[-3000:]
    return outputs


def test_multiworker_on_localhost_trains_and_resumes(data_dir, tmp_path):
    run_dir = str(tmp_path / "run")
    chief, worker = run_workers(data_dir, run_dir, "--epochs", "2")
    assert "Worker done: trained 2 epochs in step with the chief" in worker
    scratch = re.search(r"-> (\S*keras_adahan_worker_\S+)", worker).group(1)
    assert not os.path.exists(scratch)  # The other worker wrote nothing that stays.
    assert len(train.read_history(os.path.join(run_dir, run_files.HISTORY))["loss"]) == 2
    run_files.load_run(run_dir)  # The chief saved the model.

    # The chief refuses the folder (neither --resume nor --overwrite): the other worker,
    # waiting in its first collective, says it lost its peer (TensorFlow's op name before).
    outputs, codes = run_workers(data_dir, run_dir, "--epochs", "2", succeed=False)
    assert codes == [2, 2], outputs
    assert "already exists. Pass --overwrite to replace it" in outputs[0]
    assert ("error: --distribute multiworker: could not reach or lost contact with another "
            "worker of TF_CONFIG's cluster" in outputs[1]), outputs[1][-3000:]
    # TensorFlow's cause follows in brackets; which one depends on when the chief left
    # ("Collective ops is aborted by: Socket closed", or the coordination service's).
    assert [line for line in outputs[1].splitlines() if line.startswith("error: ")] == [
        line for line in outputs[1].splitlines() if "lost contact" in line]
    assert "function_node" not in outputs[1]

    # Worker 1 without --resume would start at epoch 1 where the chief starts at 3: it
    # waited for steps the chief never ran. Both refuse now, and the run is as it was.
    outputs, codes = run_workers(data_dir, run_dir, "--epochs", "3", chief_extra=["--resume"],
                                 succeed=False)
    assert codes == [2, 2], outputs
    for output in outputs:
        assert ("the workers do not start from the same point (epochs done: 2, 0)"
                in output), output[-3000:]
    assert len(train.read_history(os.path.join(run_dir, run_files.HISTORY))["loss"]) == 2
    run_files.load_run(run_dir)
    # The other worker at another learning rate: each worker applied the summed gradients
    # its own way, and their weights parted without a word.
    outputs, codes = run_workers(data_dir, run_dir, "--epochs", "3", "--resume",
                                 worker_extra=["--learning_rate", "0.01"], succeed=False)
    assert codes == [2, 2], outputs
    for output in outputs:
        assert ("the workers do not start from the same point (the training flags)"
                in output), output[-3000:]

    # Both resume from the chief's backup: 2 epochs done, 2 steps each.
    chief, worker = run_workers(data_dir, run_dir, "--epochs", "3", "--resume")
    for output in (chief, worker):
        assert "2 epochs done, optimizer step 4; continuing at epoch 3/3" in output
    assert len(train.read_history(os.path.join(run_dir, run_files.HISTORY))["loss"]) == 3
    state = run_files.read_json(os.path.join(run_dir, "backup", "state.json"))
    assert state["epoch"] == 3


def test_multiworker_loop_weighs_questions_as_fit_does():
    # Batches with loss weights (questions padded: CLEVR, folder datasets; a warm-up) failed
    # in the loop with "too many values to unpack (expected 2)".
    rng = np.random.default_rng(0)
    features = rng.normal(size=(8, 3, 4)).astype("float32")  # 8 images x 3 questions
    labels = rng.integers(0, 5, (8, 3)).astype("int32")
    weights = (rng.random((8, 3)) > 0.4).astype("float32")
    batches = tf.data.Dataset.from_tensor_slices((features, labels, weights)).batch(4)

    def compiled():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3, 4)), keras.layers.Dense(5)])
        model.compile(keras.optimizers.Adam(0.1),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      weighted_metrics=[keras.metrics.SparseCategoricalAccuracy("accuracy")])
        return model

    expected = compiled()
    expected_history = expected.fit(batches, validation_data=batches, epochs=2, verbose=0,
                                    shuffle=False).history
    model = compiled()
    history = multiworker.fit(model, batches.repeat(2), batches, epochs=2, initial_epoch=0,
                              steps_per_epoch=2, callbacks=[],
                              strategy=tf.distribute.get_strategy(), verbose=0).history
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(history[key], expected_history[key], rtol=1e-5, err_msg=key)
    for weight, expected_weight in zip(model.get_weights(), expected.get_weights()):
        np.testing.assert_allclose(weight, expected_weight, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tf_config, message", [
    ("", "needs the TF_CONFIG environment variable"),
    ("not json", "TF_CONFIG is not JSON"),  # TensorFlow's message named no variable.
    ("{}", 'TF_CONFIG must hold a "cluster" and a "task"'),  # Trained alone.
    ('{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}',
     'cluster "worker" must be a list of "host:port" strings'),  # A TypeError traceback.
    ('{"cluster": {"worker": ["a:1"], "evaluator": ["b:1"]}, '  # Trained a run alone.
     '"task": {"type": "evaluator", "index": 0}}', "task must be one of its cluster's tasks "
                                                   'that train: "type" one of worker'),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "evaluator", "index": 0}}',
     "task must be one of its cluster"),  # A KeyError traceback.
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}',
     "task must be one of its cluster"),
])
def test_tf_config_is_checked_before_the_strategy(tf_config, message):
    with pytest.raises(ValueError, match=message):
        multiworker.check_tf_config(tf_config)
    multiworker.check_tf_config('{"cluster": {"chief": ["a:1"], "worker": ["b:1"], '
                                '"evaluator": ["c:1"]}, "task": {"type": "worker", "index": "0"}}')


WORKER_THAT_FAILS = """
import sys, types
from keras_adahan import distribute
resolver = types.SimpleNamespace(task_type="worker", task_id=1, cluster_spec=lambda: types.
                                 SimpleNamespace(as_dict=lambda: {"worker": ["a:1", "b:1"]}))
args = types.SimpleNamespace(output_dir=sys.argv[1], resume=True)
chief, chief_backup = distribute.become_worker_unless_chief(
    args, types.SimpleNamespace(cluster_resolver=resolver))
print(chief, chief_backup, args.output_dir, flush=True)
raise SystemExit("error: the chief refused the run folder")
"""


def test_a_failed_worker_leaves_no_scratch_folder(tmp_path):
    # Removed only after a worker's training succeeded: one that failed left it in /tmp.
    result = subprocess.run([sys.executable, "-c", WORKER_THAT_FAILS, str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "the chief refused" in result.stderr
    chief, chief_backup, scratch = result.stdout.split()
    assert (chief, chief_backup) == ("False", str(tmp_path / "run" / "backup"))
    assert "keras_adahan_worker_" in scratch and not os.path.exists(scratch)


def test_a_peer_lost_in_a_training_step_is_one_line():
    # TensorFlow's message of a collective aborted inside a tf.function (a worker killed in
    # a step) starts with "Graph execution error:"; the line said only that.
    message = ("Graph execution error:\n\nDetected at node CollectiveReduceV2 defined at "
               "(most recent call last):\n  File \"train.py\", line 1, in <module>\n\n"
               "Collective ops is aborted by: Socket closed\nThe error could be from a "
               "previous operation.\n\t [[{{node CollectiveReduceV2}}]] "
               "[Op:__inference_step_4242]")
    with pytest.raises(cli.UserError) as raised:
        with multiworker.lost_peers_explained():
            raise tf.errors.UnavailableError(None, None, message)
    assert str(raised.value) == (
        "--distribute multiworker: could not reach or lost contact with another worker of "
        "TF_CONFIG's cluster (it stopped, failed or was killed: its own output says why); "
        "start every worker again, with --resume to continue (Collective ops is aborted by: "
        "Socket closed)")


def test_workers_compare_a_folders_content_not_its_path():
    # A folder dataset holds its absolute path: workers keeping the same folder in other
    # places were refused as other flags; two folders of other content are not the same.
    def settings(folder, digest, fields, *flags):
        args = train.parse_args(["--dataset", "tiny", *flags])
        args.dataset, args.model_fields = f"folder:{folder}", fields  # As parsed for one.
        dataset = types.SimpleNamespace(training_data={"train_digest": digest},
                                        spec=types.SimpleNamespace(name=args.dataset))
        return train.worker_settings(args, dataset)

    here = settings("/home/a/cards", "0f1e", ["k=3", "fusion=multiply"], "--output_dir", "/a")
    assert settings("/mnt/b/cards", "0f1e", ["fusion=multiply", "k=3"], "--output_dir",
                    "/b") == here
    assert settings("/home/a/cards", "9999", ["k=3", "fusion=multiply"]) != here
    assert settings("/home/a/cards", "0f1e", ["k=3", "fusion=multiply"], "--learning_rate",
                    "0.5") != here
