"""Crash-safe training backups for `python -m keras_adahan.train --resume`.

`keras.callbacks.BackupAndRestore` (Keras 3.15) is not enough to resume after a SIGKILL:

- it overwrites `latest.weights.h5` in place, then writes `training_metadata.json`: a kill
  during the first write leaves a truncated weights file (restore then fails with an
  `OSError`), a kill between the two leaves weights one epoch ahead of the recorded epoch,
  so that epoch is trained twice;
- it backs up the epoch that `TerminateOnNaN` cut short, so NaN weights replace the last
  good ones;
- it deletes the backup as soon as `fit` returns, before the trainer has written
  `model.keras`: a kill during the final save or evaluation loses the whole run;
- it knows nothing of `history.csv`, which `CSVLogger` appends separately: a kill between
  the two writes loses or repeats that epoch's row.

`AtomicBackupAndRestore` writes every file under a temporary name and renames it into
place, makes one rename (`state.json`) the commit point of an epoch, keeps the history
inside the backup and rewrites `history.csv` from it, so the history always matches the
weights that a resumed run starts from.
"""

import csv
import math
import os
import re
import time

import h5py
import keras

from keras_adahan import folders
from keras_adahan import run_files

STATE = "state.json"


class AtomicBackupAndRestore(keras.callbacks.Callback):
    """Backs up weights, optimizer state, epoch and history after each epoch; restores them.

    After epoch `e` (0-based) completes, the callback writes, each file to a temporary
    name renamed into place:

    1. `backup_dir/epoch-{e + 1:04d}.weights.h5`: the model's and the optimizer's
       variables (`Model.save_weights` holds both, so Adam's moments and iteration count
       survive);
    2. `backup_dir/state.json`: `{"epoch": e + 1, "weights": <that file>, "history": [...]}`,
       one history row per completed epoch, and `"seconds"`: the wall time of those
       epochs, summed over resumes (`seconds`). This rename commits the epoch;
    3. `history_path`, rewritten from the state's history (CSVLogger's format: `epoch`,
       then the metrics in name order).

    Then it deletes the previous weights file. A kill at any point leaves the previous or
    the new state, each complete; at the start of `fit` the callback loads the state's
    weights, sets the initial epoch and rewrites `history_path` from the state, dropping
    rows of an epoch whose backup never committed.

    With `monitor` (e.g. `"val_loss"`), the weights file of the epoch with the lowest
    value is kept too (`state.json` names it as `best`), across resumes, and
    `restore_best(model)` loads it: what `EarlyStopping(restore_best_weights=True)` does,
    but surviving a kill.

    An epoch whose logs hold a NaN or infinite value (one that `TerminateOnNaN` stopped,
    or a NaN validation loss) is not backed up, and ends the run (`stop_training`): the
    last good epoch stays the one to resume from. The backup is
    kept when `fit` returns; delete `backup_dir` once it is no longer needed.

    Args:
        backup_dir: str. Folder of the backup, used by nothing else.
        history_path: str or None. CSV file of per-epoch metrics kept in step with the
            backup. Defaults to None (no CSV).
        read_only: bool. Restore from `backup_dir` but write nothing: the workers of a
            multi-worker run other than the chief, which writes. Defaults to False.
        monitor: str or None. A logged metric to minimize; its best epoch's weights are
            kept for `restore_best`. Defaults to None (only the latest epoch is kept).

    Example:

    ```python
    backup = AtomicBackupAndRestore("run/backup", history_path="run/history.csv")
    model.fit(train_ds, epochs=10, initial_epoch=backup.epoch, callbacks=[backup])
    # Killed? The same two lines continue from the last completed epoch.
    ```
    """

    def __init__(self, backup_dir, history_path=None, read_only=False, monitor=None):
        super().__init__()
        if not backup_dir:
            raise ValueError(f"`backup_dir` must be a folder path, received {backup_dir!r}")
        self.backup_dir = backup_dir
        self.history_path = None if read_only else history_path
        self.read_only = read_only
        self.monitor = monitor
        self._history = []
        self._best = None  # {"epoch", "weights", "value"} of the best epoch so far.
        self._seconds = 0.0  # Of the committed epochs, across resumes; None: not recorded.
        self._epoch_start = None

    @property
    def state_path(self):
        return os.path.join(self.backup_dir, STATE)

    def read_state(self):
        """The committed state (`epoch`, `weights`, `history`), or None if there is none.

        Raises:
            ValueError: the backup is damaged (state or weights file unreadable or missing),
                naming the file.
        """
        if not os.path.exists(self.state_path):
            return None
        try:
            state = run_files.read_json(self.state_path)
            _check_state(state)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(self._damaged(f"{self.state_path!r} is unreadable ({error})")) from None
        best = state.get("best")
        for name in {state["weights"]} | ({best["weights"]} if best else set()):
            weights = os.path.join(self.backup_dir, name)
            try:
                with h5py.File(weights, "r"):
                    pass
            except OSError as error:  # Missing, truncated or not HDF5.
                raise ValueError(self._damaged(f"{weights!r} does not open ({error})")) from None
        return state

    def _damaged(self, detail):
        return (f"the training backup {self.backup_dir!r} is damaged: {detail}. Move that "
                "folder away to train the run from the start, or train into another "
                "--output_dir")

    @property
    def epoch(self):
        """Number of completed epochs in the backup: the epoch `fit` resumes at."""
        state = self.read_state()
        return state["epoch"] if state else 0

    def on_train_begin(self, logs=None):
        if not self.read_only:
            self._remove_leftovers(keep=None)
        state = self.read_state()
        if state is None:
            self._history, self._best, self._seconds = [], None, 0.0
            if self.history_path and os.path.exists(self.history_path):
                os.remove(self.history_path)  # Rows of epochs that were never backed up.
            return
        weights = os.path.join(self.backup_dir, state["weights"])
        if self.model.optimizer is not None and not self.model.optimizer.built:
            # The optimizer's variables must exist before their values can be loaded.
            self.model.optimizer.build(self.model.trainable_variables)
        try:
            self.model.load_weights(weights)
        except (OSError, ValueError) as error:  # Truncated, or another model's.
            first_line = (str(error).splitlines() or [type(error).__name__])[0]
            raise ValueError(self._damaged(
                f"{weights!r} does not load: it is truncated, or another model's or another "
                f"keras-adahan version's ({first_line})")) from None
        # Keras' own BackupAndRestore resumes this way; `fit` reads it at its start.
        self.model._initial_epoch = state["epoch"]
        self._history = list(state["history"])
        self._best = state.get("best")
        self._seconds = state.get("seconds")  # Backups written before it have none.
        if not self.read_only:
            self._write_history()
            self._remove_leftovers(keep=self._kept(state["weights"]))
        step = int(self.model.optimizer.iterations.numpy()) if self.model.optimizer else 0
        total = (self.params or {}).get("epochs")
        left = (f"continuing at epoch {state['epoch'] + 1}/{total}"
                if total is None or state["epoch"] < total else "no epoch left to train")
        print(f"Restored {weights}: {state['epoch']} epochs done, optimizer step {step}; {left}")

    @property
    def seconds(self):
        """Wall seconds the committed epochs took, summed over every resume (None if an
        older backup did not record them)."""
        return self._seconds

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = {name: float(value) for name, value in (logs or {}).items()}
        if not all(math.isfinite(value) for value in logs.values()):
            # Keep the last good backup, and end the run (TerminateOnNaN watches only the
            # training batches): the next epoch's would follow a gap in the history.
            self.model.stop_training = True
            return
        if self.read_only:
            return  # Another worker's: the chief writes it.
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch-{epoch + 1:04d}.weights.h5"
        with run_files.atomic_path(os.path.join(self.backup_dir, name)) as tmp:
            self.model.save_weights(tmp)
        self._history.append({"epoch": epoch, **logs})
        state = {"epoch": epoch + 1, "weights": name, "history": self._history}
        if self.monitor in logs and (self._best is None
                                     or logs[self.monitor] < self._best["value"]):
            self._best = {"epoch": epoch + 1, "weights": name, "value": logs[self.monitor]}
        if self._best is not None:
            state["best"] = self._best
        if self._seconds is not None and self._epoch_start is not None:
            self._seconds += time.monotonic() - self._epoch_start
            state["seconds"] = round(self._seconds, 1)
        run_files.write_json(self.state_path, state)  # The commit point.
        self._remove_leftovers(keep=self._kept(name))
        self._write_history()

    def restore_best(self, model):
        """Loads the best epoch's weights (see `monitor`) into `model`, the model `fit`
        trained; returns `{"epoch", "value"}` of that epoch, or None if none was kept."""
        best = (self.read_state() or {}).get("best")
        if best is None:
            return None
        model.load_weights(os.path.join(self.backup_dir, best["weights"]))
        return {"epoch": best["epoch"], "value": best["value"]}

    def _kept(self, latest):
        """The weights files to keep: the latest epoch's and the best one's."""
        return {latest} | ({self._best["weights"]} if self._best else set())

    def _write_history(self):
        if not self.history_path:
            return
        names = sorted({name for row in self._history for name in row} - {"epoch"})
        with run_files.atomic_path(self.history_path) as tmp:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=["epoch"] + names)
                writer.writeheader()
                writer.writerows(self._history)

    def _remove_leftovers(self, keep):
        """Deletes weights files not in `keep` (a set; None: keep all) and temporary files
        of killed writes."""
        if not os.path.isdir(self.backup_dir):
            return
        for name in os.listdir(self.backup_dir):
            stale_weights = (re.fullmatch(r"epoch-\d+\.weights\.h5", name) is not None
                             and keep is not None and name not in keep)
            # As in a run folder's `backup/`, whatever this folder is named.
            if folders.is_being_written(f"backup/{name}") or stale_weights:
                os.remove(os.path.join(self.backup_dir, name))


def _check_state(state):
    """Raises `ValueError` unless `state` is what `on_epoch_end` writes."""
    epoch, history, weights = state["epoch"], state["history"], state["weights"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise ValueError(f"epoch must be a count of completed epochs, received {epoch!r}")
    if not isinstance(history, list) or len(history) != epoch:
        raise ValueError(f"history must hold one row per completed epoch ({epoch})")
    names = None
    for row in history:
        if not isinstance(row, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in row.values()):
            raise ValueError("every history row must map metric names to numbers")
        if names is not None and set(row) != names:
            raise ValueError("every history row must hold the same metrics")
        names = set(row)
    seconds = state.get("seconds", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
        raise ValueError(f"seconds must be a number of seconds, received {seconds!r}")
    if not isinstance(weights, str) or os.path.basename(weights) != weights:
        raise ValueError(f"weights must name a file of the backup, received {weights!r}")
    best = state.get("best")
    if best is not None and not (
            isinstance(best, dict) and set(best) == {"epoch", "weights", "value"}
            and isinstance(best["epoch"], int) and not isinstance(best["epoch"], bool)
            and 1 <= best["epoch"] <= epoch
            and isinstance(best["weights"], str)
            and os.path.basename(best["weights"]) == best["weights"]
            and isinstance(best["value"], (int, float)) and not isinstance(best["value"], bool)
            and math.isfinite(best["value"])):
        raise ValueError("best must hold the best epoch, its weights file of the backup and "
                         f"its finite value, received {best!r}")
