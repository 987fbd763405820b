"""Resuming training after a SIGKILL, and the NaN guard rail.

The trainer tests run the real `python -m keras_adahan.train` in subprocesses on the
`tiny` barn_vqa config; the callback tests fit a two-weight model in-process.
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import keras
import numpy as np
import pytest

from keras_adahan import data
from keras_adahan import run_files
from keras_adahan import train
from keras_adahan.backup import STATE
from keras_adahan.backup import AtomicBackupAndRestore

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
EPOCHS = 8
STEPS = 8  # tiny: 8 training images, --batch_size 1.


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tfds"))
    data.prepare_dataset("tiny", path)  # Built once, not by each trainer process.
    return path


def train_command(data_dir, run_dir, *extra):
    return [sys.executable, "-m", "keras_adahan.train", "--dataset", "tiny",
            "--data_dir", data_dir, "--output_dir", run_dir, "--batch_size", "1",
            "--seed", "3", "--dtype", "float32", *extra]  # Compared bit for bit.


def history_epochs(run_dir):
    path = os.path.join(run_dir, run_files.HISTORY)
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def optimizer_step(weights_path):
    with h5py.File(weights_path, "r") as f:
        return int(f["optimizer"]["vars"]["0"][()])  # Adam's iteration count comes first.


def test_sigkill_mid_epoch_then_resume(data_dir, tmp_path):
    killed, reference = str(tmp_path / "killed"), str(tmp_path / "reference")
    # The uninterrupted run, to compare with; it runs beside the one to be killed.
    uninterrupted = subprocess.Popen(
        train_command(data_dir, reference, "--epochs", str(EPOCHS)), env=ENV,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victim = subprocess.Popen(
        train_command(data_dir, killed, "--epochs", str(EPOCHS)), env=ENV,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Time two epochs from history.csv's rows, then kill half-way through the next.
        seen, deadline = {}, time.time() + 120
        while len(seen) < 4 and time.time() < deadline and victim.poll() is None:
            seen.setdefault(len(history_epochs(killed)), time.time())
            time.sleep(0.01)
        assert victim.poll() is None, "training ended before it could be killed"
        assert len(seen) == 4, "no epoch finished within 2 minutes"
        time.sleep((seen[3] - seen[2]) / 2)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    finally:
        if victim.poll() is None:
            victim.kill()
    assert victim.returncode == -signal.SIGKILL

    # What the kill left: a committed backup, and no file that is half written.
    state = run_files.read_json(os.path.join(killed, "backup", STATE))
    done = state["epoch"]
    assert 3 <= done < EPOCHS
    assert history_epochs(killed) in (list(range(done)), list(range(done - 1)))
    assert optimizer_step(os.path.join(killed, "backup", state["weights"])) == done * STEPS
    for name in (run_files.CONFIG, run_files.ANSWERS, run_files.VOCABULARY):
        run_files.read_json(os.path.join(killed, name))
    assert not os.path.exists(os.path.join(killed, run_files.MODEL))

    resumed = subprocess.run(
        train_command(data_dir, killed, "--epochs", str(EPOCHS), "--resume"), env=ENV,
        capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (f"{done} epochs done, optimizer step {done * STEPS}; continuing at epoch "
            f"{done + 1}/{EPOCHS}") in resumed.stdout
    epochs_run = [line for line in resumed.stdout.splitlines() if line.startswith("Epoch ")]
    assert epochs_run[0] == f"Epoch {done + 1}/{EPOCHS}"  # Not from the start.
    assert len(epochs_run) == EPOCHS - done
    assert history_epochs(killed) == list(range(EPOCHS))  # Each epoch exactly once.
    final = run_files.read_json(os.path.join(killed, "backup", STATE))
    assert final["epoch"] == EPOCHS
    # training.json's time covers the epochs before the kill too.
    training = run_files.read_json(os.path.join(killed, run_files.TRAINING))
    assert training["seconds_all_epochs"] == final["seconds"] > state["seconds"] > 0
    assert optimizer_step(os.path.join(killed, "backup", final["weights"])) == EPOCHS * STEPS
    for parent, folders, files in os.walk(killed):
        assert not [n for n in folders + files if n.startswith(".tmp-")], parent

    output, _ = uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode == 0, output
    # Same seed, same batches (each epoch's shuffle depends on the seed and the epoch
    # only), weights and optimizer state restored exactly: the same model, bit for bit.
    a = run_files.load_run(killed).model.get_weights()
    b = run_files.load_run(reference).model.get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    with open(os.path.join(killed, run_files.HISTORY)) as f1, \
            open(os.path.join(reference, run_files.HISTORY)) as f2:
        assert f1.read() == f2.read()


def train_in_process(data_dir, run_dir, *extra):
    """`python -m keras_adahan.train` in this process (faster than a new one)."""
    return train.main(train_command(data_dir, run_dir, *extra)[3:])


def test_nan_loss_stops_cleanly(data_dir, tmp_path):
    # At 1e38 the second step's loss overflows (inf), which the NaN check catches.
    run_dir = str(tmp_path / "nan")
    with pytest.raises(SystemExit) as stop:  # Exit status 2 with one line (cli.run).
        train_in_process(data_dir, run_dir, "--epochs", "3", "--learning_rate", "1e38")
    message = str(stop.value)
    assert stop.value.code == 2
    assert message.startswith("the loss became NaN in epoch 1")
    assert "No model.keras was written; no epoch completed" in message
    assert not os.path.exists(os.path.join(run_dir, run_files.MODEL))
    assert not os.path.exists(os.path.join(run_dir, run_files.HISTORY))
    assert not os.path.exists(os.path.join(run_dir, "backup", STATE))


def test_diverged_run_with_finite_losses_writes_no_model(data_dir, tmp_path, monkeypatch):
    # Weights that are not finite though every loss was: one step at 1e30 did that on an
    # AVX-512 machine (losses ~1e29, answers NaN) and turned the loss NaN on an AVX2 one, so
    # the last layer's weights are set to NaN after training, before the model is saved.
    to_float32 = train.float32_model

    def diverged(model):
        model = to_float32(model)
        weight = model.trainable_weights[-1]
        weight.assign(np.full(weight.shape, np.nan, "float32"))
        return model

    monkeypatch.setattr(train, "float32_model", diverged)
    run_dir = str(tmp_path / "diverged")
    with pytest.raises(SystemExit) as stop:
        train_in_process(data_dir, run_dir, "--epochs", "1", "--seed", "0")
    assert stop.value.code == 2
    assert str(stop.value) == (
        "training diverged: the model's answers on the test split are not finite (NaN or "
        "infinite); lower --learning_rate. No model.keras was written.")
    assert not os.path.exists(os.path.join(run_dir, run_files.MODEL))
    assert not [name for name in os.listdir(run_dir) if name.startswith(".tmp-")]


def test_resume_of_an_empty_folder_starts_a_new_run(data_dir, tmp_path, capsys, monkeypatch):
    run_dir = str(tmp_path / "never_started")
    train_in_process(data_dir, run_dir, "--epochs", "1", "--resume")
    assert "nothing to resume" in capsys.readouterr().out
    assert history_epochs(run_dir) == [0]
    # Resuming it as another model is refused; the run is left as it was.
    with pytest.raises(SystemExit, match="was trained with another model config"):
        train_in_process(data_dir, run_dir, "--epochs", "2", "--resume", "--variant", "none")
    assert history_epochs(run_dir) == [0]
    # A run saved before a config field existed (config.json without it) was built with the
    # field's default: it resumes.
    config_path = os.path.join(run_dir, run_files.CONFIG)
    config = run_files.read_json(config_path)
    for field in ("cell_coordinates", "skip_padding", "count_pool_padding"):
        del config["model"][field]
    run_files.write_json(config_path, config)
    train_in_process(data_dir, run_dir, "--epochs", "2", "--resume")
    assert history_epochs(run_dir) == [0, 1]
    # Resumed when finished: evaluated again, the training's time kept (it was replaced by
    # that of no epoch: 0 questions/s).
    training = run_files.read_json(os.path.join(run_dir, run_files.TRAINING))
    train_in_process(data_dir, run_dir, "--epochs", "2", "--resume")
    assert run_files.read_json(os.path.join(run_dir, run_files.TRAINING)) == training
    assert training["questions_per_second"] > 0
    # Trained further and stopped before it finished (its evaluation interrupted):
    # config.json still describes its model.keras (it said 3 epochs over the 2-epoch
    # model, which evaluate, export and the table scripts then took for a 3-epoch run).
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train.evaluate, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_in_process(data_dir, run_dir, "--epochs", "3", "--resume")
    monkeypatch.undo()
    assert history_epochs(run_dir) == [0, 1, 2]
    assert run_files.read_json(config_path)["train"]["epochs"] == 2
    assert train.settings_differences(run_dir, train_command(data_dir, run_dir, "--epochs",
                                                             "3")[3:]) == ["epochs 2 (asked 3)"]
    # A damaged "model" in config.json: one line (a KeyError or AttributeError traceback).
    saved = run_files.read_json(config_path)
    run_files.write_json(config_path, {**saved, "model": [1]})
    with pytest.raises(SystemExit, match=r"--resume: cannot read .*config.json \("
                                         '"model" is a list, not an object'):
        train_in_process(data_dir, run_dir, "--epochs", "3", "--resume")
    run_files.write_json(config_path, saved)
    # Its backup deleted (as docs/scale_and_faults.md allows): --resume trained it again
    # from epoch 1 and replaced the finished model.
    with open(os.path.join(run_dir, run_files.MODEL), "rb") as f:
        model = f.read()
    shutil.rmtree(os.path.join(run_dir, "backup"))
    with pytest.raises(SystemExit, match="holds a trained model.keras but no backup/"):
        train_in_process(data_dir, run_dir, "--epochs", "4", "--resume")
    with open(os.path.join(run_dir, run_files.MODEL), "rb") as f:
        assert f.read() == model
    assert history_epochs(run_dir) == [0, 1, 2]


# --- AtomicBackupAndRestore on its own -------------------------------------------------


def small_model():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model


X = np.arange(16, dtype="float32").reshape(8, 2) / 16
Y = X.sum(axis=1, keepdims=True)


class EpochRecorder(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.start_step = int(self.model.optimizer.iterations.numpy())
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_callback_restores_weights_optimizer_epoch_and_history(tmp_path):
    backup_dir, history = str(tmp_path / "backup"), str(tmp_path / "history.csv")
    first = small_model()
    first.fit(X, Y, batch_size=4, epochs=3, verbose=0,
              callbacks=[AtomicBackupAndRestore(backup_dir, history)])
    assert sorted(os.listdir(backup_dir)) == ["epoch-0003.weights.h5", STATE]

    second, recorder = small_model(), EpochRecorder()
    backup = AtomicBackupAndRestore(backup_dir, history)
    assert backup.epoch == 3
    second.fit(X, Y, batch_size=4, epochs=5, verbose=0, callbacks=[backup, recorder])
    assert recorder.start_step == 6 and recorder.epochs == [3, 4]
    assert int(second.optimizer.iterations.numpy()) == 10
    assert [row["epoch"] for row in read_rows(history)] == ["0", "1", "2", "3", "4"]


def test_callback_drops_what_a_kill_left_half_done(tmp_path):
    backup_dir, history = str(tmp_path / "backup"), str(tmp_path / "history.csv")
    small_model().fit(X, Y, batch_size=4, epochs=2, verbose=0,
                      callbacks=[AtomicBackupAndRestore(backup_dir, history)])
    # Killed during epoch 3's writes: a truncated temporary weights file, a stale one,
    # and a history row (plus half a line) for an epoch the state never committed.
    with open(os.path.join(backup_dir, ".tmp-999-epoch-0003.weights.h5"), "wb") as f:
        f.write(b"\x89HDF\r\n")
    with open(os.path.join(backup_dir, "epoch-0001.weights.h5"), "wb") as f:
        f.write(b"stale")
    with open(history, "a") as f:
        f.write("2,0.5\n3,0.")

    model, recorder = small_model(), EpochRecorder()
    model.fit(X, Y, batch_size=4, epochs=2, verbose=0,
              callbacks=[AtomicBackupAndRestore(backup_dir, history), recorder])
    assert recorder.epochs == [] and recorder.start_step == 4  # Nothing left to train.
    assert [row["epoch"] for row in read_rows(history)] == ["0", "1"]
    assert sorted(os.listdir(backup_dir)) == ["epoch-0002.weights.h5", STATE]


class PoisonAt(keras.callbacks.Callback):
    """Sets the kernel to NaN when epoch `epoch` begins."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            kernel = self.model.layers[0].kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


def test_nan_epoch_is_not_backed_up(tmp_path):
    backup_dir, history = str(tmp_path / "backup"), str(tmp_path / "history.csv")
    backup = AtomicBackupAndRestore(backup_dir, history)
    model = small_model()
    second = []  # The weights after the last good epoch.
    keep = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: epoch == 1 and second.extend(model.get_weights()))
    model.fit(X, Y, batch_size=4, epochs=5, verbose=0,
              callbacks=[backup, keras.callbacks.TerminateOnNaN(), PoisonAt(2), keep])
    assert model.stop_training
    state = backup.read_state()
    assert state["epoch"] == 2 and len(read_rows(history)) == 2
    restored = small_model()
    restored.fit(X, Y, batch_size=4, epochs=2, verbose=0,
                 callbacks=[AtomicBackupAndRestore(backup_dir)])
    assert len(second) == len(restored.get_weights())
    for expected, weights in zip(second, restored.get_weights()):
        np.testing.assert_array_equal(weights, expected)


class NaNValidationLossAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            logs["val_loss"] = float("nan")


def test_nan_validation_loss_ends_the_run(tmp_path):
    # TerminateOnNaN watches the training loss only: fit went on, the next epoch's backup
    # followed a gap in its history, and the backup then read as damaged.
    backup = AtomicBackupAndRestore(str(tmp_path / "backup"), str(tmp_path / "history.csv"),
                                    monitor="val_loss")
    model = small_model()
    history = model.fit(X, Y, batch_size=4, epochs=4, verbose=0, validation_data=(X, Y),
                        callbacks=[NaNValidationLossAt(1), backup,
                                   keras.callbacks.TerminateOnNaN()])
    assert history.epoch == [0, 1]
    assert backup.epoch == 1 and len(read_rows(str(tmp_path / "history.csv"))) == 1


def test_callback_rejects_an_empty_backup_dir():
    with pytest.raises(ValueError, match="`backup_dir` must be a folder path"):
        AtomicBackupAndRestore("")


def test_state_file_is_json(tmp_path):
    backup_dir = str(tmp_path / "backup")
    small_model().fit(X, Y, batch_size=8, epochs=1, verbose=0,
                      callbacks=[AtomicBackupAndRestore(backup_dir)])
    with open(os.path.join(backup_dir, STATE)) as f:
        state = json.load(f)
    assert state["epoch"] == 1 and state["weights"] == "epoch-0001.weights.h5"
    assert set(state["history"][0]) == {"epoch", "loss"}


class ScriptedValLoss(keras.callbacks.Callback):
    """Reports `values[epoch]` as the epoch's `val_loss` and records the weights then."""

    def __init__(self, values):
        super().__init__()
        self.values, self.weights = values, {}

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]
        self.weights[epoch] = self.model.get_weights()


def test_monitor_keeps_the_best_epoch_across_a_resume(tmp_path):
    backup_dir = str(tmp_path / "backup")
    scripted = ScriptedValLoss([3.0, 1.0, 2.0, 1.5, 1.1])
    first = small_model()
    first.fit(X, Y, batch_size=4, epochs=4, verbose=0,
              callbacks=[scripted, AtomicBackupAndRestore(backup_dir, monitor="val_loss")])
    # The latest epoch's weights (to resume from) and the best one's (epoch 2).
    assert sorted(os.listdir(backup_dir)) == [
        "epoch-0002.weights.h5", "epoch-0004.weights.h5", STATE]

    second = small_model()
    backup = AtomicBackupAndRestore(backup_dir, monitor="val_loss")
    second.fit(X, Y, batch_size=4, epochs=5, verbose=0, callbacks=[scripted, backup])
    assert backup.restore_best(second) == {"epoch": 2, "value": 1.0}
    for restored, best in zip(second.get_weights(), scripted.weights[1]):
        np.testing.assert_array_equal(restored, best)
    # Without a monitor nothing is kept for it.
    plain = AtomicBackupAndRestore(str(tmp_path / "plain"))
    small_model().fit(X, Y, batch_size=4, epochs=2, verbose=0, callbacks=[plain])
    assert plain.restore_best(small_model()) is None


class SlowEpochs(keras.callbacks.Callback):
    """Makes every epoch last at least `seconds` (before the backup's `on_epoch_end`)."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_epoch_end(self, epoch, logs=None):
        time.sleep(self.seconds)


def test_backup_sums_epoch_seconds_across_a_resume(tmp_path):
    backup_dir = str(tmp_path / "backup")
    first = AtomicBackupAndRestore(backup_dir)
    small_model().fit(X, Y, batch_size=4, epochs=2, verbose=0,
                      callbacks=[SlowEpochs(0.2), first])
    assert first.seconds >= 0.4
    assert run_files.read_json(os.path.join(backup_dir, STATE))["seconds"] >= 0.4

    resumed = AtomicBackupAndRestore(backup_dir)
    small_model().fit(X, Y, batch_size=4, epochs=3, verbose=0,
                      callbacks=[SlowEpochs(0.2), resumed])
    # The third epoch's time is added to the first two's, not counted alone.
    assert resumed.seconds >= first.seconds + 0.2
    assert run_files.read_json(os.path.join(backup_dir, STATE))["seconds"] >= 0.6

    # A damaged time is named, as the rest of a damaged state is.
    state = run_files.read_json(os.path.join(backup_dir, STATE))
    run_files.write_json(os.path.join(backup_dir, STATE), {**state, "seconds": "soon"})
    with pytest.raises(ValueError, match="state.json.* is unreadable .*seconds must be a number"):
        AtomicBackupAndRestore(backup_dir).read_state()

    # A backup written before the field: its time is unknown, not zero.
    state = run_files.read_json(os.path.join(backup_dir, STATE))
    del state["seconds"]
    run_files.write_json(os.path.join(backup_dir, STATE), state)
    older = AtomicBackupAndRestore(backup_dir)
    small_model().fit(X, Y, batch_size=4, epochs=4, verbose=0, callbacks=[older])
    assert older.seconds is None
    assert "seconds" not in run_files.read_json(os.path.join(backup_dir, STATE))
