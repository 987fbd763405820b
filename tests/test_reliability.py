"""Nothing a user owns is lost, one writer per run folder, and bad input gets one clear line.

Each test here stands behind a row of docs/reliability.md.
"""

import argparse
import errno
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from conftest import load_benchmark

from keras_adahan import cli
from keras_adahan import data
from keras_adahan import folders
from keras_adahan import run_files
from keras_adahan import train
from keras_adahan.backup import STATE
from keras_adahan.export import exporter
from keras_adahan.model import VQAModel

ENV = dict(os.environ, PYTHONUNBUFFERED="1")
ENV.pop("TF_CPP_MIN_LOG_LEVEL", None)  # The tools' own quiet start-up is under test too.


def tiny_flags(data_dir, output_dir, *extra):
    return ["--dataset", "tiny", "--epochs", "1", "--data_dir", data_dir,
            "--output_dir", str(output_dir), *extra]


def snapshot(folder):
    """Every file below `folder` with its bytes: what must survive a refused command (the
    lock file aside: it names whoever last held the folder)."""
    files = {}
    for parent, _, names in os.walk(folder):
        for name in set(names) - {folders.LOCK}:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, folder)] = f.read()
    return files


def user_folder(path):
    os.makedirs(path / "photos", exist_ok=True)
    (path / "notes.txt").write_text("mine")
    (path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return path


@pytest.fixture
def copied_run(exported_tiny_run, tmp_path):
    """A finished run folder of this project, copied so a test may replace it."""
    run_dir = tmp_path / "runs" / "run"
    shutil.copytree(exported_tiny_run["run_dir"], run_dir)
    return run_dir


# --- 1. No data loss ---------------------------------------------------------------------


def test_overwrite_refuses_folders_the_project_did_not_write(exported_tiny_run, tmp_path,
                                                             monkeypatch):
    data_dir = exported_tiny_run["data_dir"]
    mine = user_folder(tmp_path / "mine")
    before = snapshot(mine)
    with pytest.raises(cli.UserError, match="holds files this project did not write") as stop:
        train.main(tiny_flags(data_dir, mine, "--overwrite"))
    assert stop.value.code == 2
    assert snapshot(mine) == before
    with pytest.raises(cli.UserError, match="holds no run to resume"):
        train.main(tiny_flags(data_dir, mine, "--resume"))
    assert snapshot(mine) == before
    # The working folder itself, and a parent of runs, are refused alike.
    monkeypatch.chdir(mine)
    with pytest.raises(cli.UserError, match="did not write"):
        train.main(tiny_flags(data_dir, ".", "--overwrite"))
    assert snapshot(mine) == before


def test_overwrite_refuses_a_folder_of_ours_with_a_users_file_inside_its_subfolders(
        copied_run, exported_tiny_run, tmp_path):
    from keras_adahan.export.__main__ import main

    export_dir = tmp_path / "export"
    shutil.copytree(exported_tiny_run["export_dir"], export_dir)
    # As the project wrote them, both are replaceable.
    folders.check_replaceable(str(copied_run), "run", "--output_dir")
    folders.check_replaceable(str(export_dir), "export", "--output_dir")
    for folder, inside in ((copied_run, "plots/mine.png"), (copied_run, "backup/mine.txt"),
                           (export_dir, "saved_model/mine.txt"),
                           (export_dir, "saved_model/variables/mine.txt"),
                           (copied_run, "backup/photos/"), (copied_run, ".tmp-notes.txt"),
                           (copied_run, ".tmp-2024-notes/"),  # Was taken for a killed write.
                           (copied_run, "plots/.tmp-7-model.keras")):
        path = folder / inside
        if inside.endswith("/"):
            path.mkdir()  # An empty folder of the user's counts too.
        else:
            path.write_text("mine")
        before = snapshot(folder)
        with pytest.raises(cli.UserError, match=f"holds files of yours \\({inside.rstrip('/')}\\)"):
            if folder == copied_run:
                train.main(tiny_flags(exported_tiny_run["data_dir"], folder, "--overwrite"))
            else:
                main([str(copied_run), "--output_dir", str(folder), "--overwrite",
                      "--skip_parity"])
        assert snapshot(folder) == before and (not path.is_file() or path.read_text() == "mine")
        (path.rmdir if inside.endswith("/") else path.unlink)()


def test_overwrite_refuses_a_parent_of_runs(copied_run, exported_tiny_run):
    parent = copied_run.parent
    before = snapshot(parent)
    with pytest.raises(cli.UserError, match="did not write"):
        train.main(tiny_flags(exported_tiny_run["data_dir"], parent, "--overwrite"))
    assert snapshot(parent) == before


def test_bad_flags_are_refused_before_a_folder_is_touched(copied_run, exported_tiny_run):
    before = snapshot(copied_run)
    for extra in (["--seed", "-1"], ["--k", "inf"], ["--learning_rate", "nan"],
                  ["--set", "image_size=100000"],
                  ["--variant", "adahan", "--threshold", "nan"]):
        with pytest.raises(cli.UserError) as stop:
            train.main(tiny_flags(exported_tiny_run["data_dir"], copied_run, "--overwrite",
                                  *extra))
        assert stop.value.code == 2, extra
    assert snapshot(copied_run) == before


def test_overwrite_replaces_a_run_only_once_the_new_one_succeeded(copied_run,
                                                                  exported_tiny_run):
    data_dir = exported_tiny_run["data_dir"]
    before = snapshot(copied_run)
    # A run that fails (NaN loss) leaves the old run whole, and no staging folder.
    with pytest.raises(cli.UserError, match="NaN"):
        train.main(tiny_flags(data_dir, copied_run, "--overwrite", "--learning_rate", "1e30"))
    assert snapshot(copied_run) == before
    assert os.listdir(copied_run.parent) == ["run"]
    # One that succeeds replaces it.
    train.main(tiny_flags(data_dir, copied_run, "--overwrite", "--seed", "5"))
    assert run_files.read_json(copied_run / "config.json")["train"]["seed"] == 5
    assert os.listdir(copied_run.parent) == ["run"]
    assert folders.folder_kind(str(copied_run)) == "run"


def test_users_files_that_reach_the_folder_during_an_overwrite_stop_the_swap(
        copied_run, exported_tiny_run, monkeypatch):
    # Checked when the job starts, and again when it ends: hours may pass in between.
    from keras_adahan import evaluate

    before = snapshot(copied_run)
    summary = evaluate.format_summary

    def summary_while_the_user_writes_notes(*args, **kwargs):  # Just before the swap.
        (copied_run / "notes.txt").write_text("mine")
        return summary(*args, **kwargs)

    monkeypatch.setattr(evaluate, "format_summary", summary_while_the_user_writes_notes)
    with pytest.raises(cli.UserError, match=r"gained files of yours while this job ran "
                                            r"\(notes.txt\), so it was left as it was; the new "
                                            r"run folder is '.*run\.new'"):
        train.main(tiny_flags(exported_tiny_run["data_dir"], copied_run, "--overwrite",
                              "--seed", "5"))
    assert snapshot(copied_run) == {**before, "notes.txt": b"mine"}
    assert sorted(os.listdir(copied_run.parent)) == ["run", "run.new"]
    new = copied_run.parent / "run.new"
    assert run_files.read_json(new / "config.json")["train"]["seed"] == 5
    assert (new / "model.keras").is_file() and (new / "metrics.json").is_file()


def test_overwrite_refuses_a_link_the_current_folder_and_a_link_to_nothing(
        copied_run, exported_tiny_run, tmp_path, monkeypatch):
    data_dir = exported_tiny_run["data_dir"]
    before = snapshot(copied_run)
    (tmp_path / "link").symlink_to(copied_run)
    (tmp_path / "nowhere").symlink_to(tmp_path / "gone")
    monkeypatch.chdir(tmp_path)
    for output, message in (("link/", "'link/' is a symbolic link; give the folder itself"),
                            ("nowhere", "'nowhere' cannot be made: .*nowhere' is a symbolic "
                                        "link to .*gone', which does not exist")):
        with pytest.raises(cli.UserError, match=message):
            train.main(tiny_flags(data_dir, output, "--overwrite"))
    # A folder in use cannot be moved aside at the end: refused before training.
    for cwd, output in ((copied_run, "."), (copied_run / "plots", "..")):
        monkeypatch.chdir(cwd)
        with pytest.raises(cli.UserError, match=f"'\\{output}' is or contains the current "
                                                "folder"):
            train.main(tiny_flags(data_dir, output, "--overwrite"))
    assert snapshot(copied_run) == before
    assert sorted(os.listdir(tmp_path)) == ["link", "nowhere", "runs"]


def test_a_folder_of_the_users_named_like_the_lock_or_marker_is_not_empty(copied_run,
                                                                          tmp_path):
    from keras_adahan.export.__main__ import main

    for name in (folders.LOCK, folders.MARKER):
        output = tmp_path / f"out{name}"
        (output / name).mkdir(parents=True)
        (output / name / "thesis.tex").write_text("mine")
        assert not folders.is_empty(str(output))
        with pytest.raises(cli.UserError, match="is not empty"):
            main([str(copied_run), "--output_dir", str(output), "--skip_parity"])
        assert (output / name / "thesis.tex").read_text() == "mine"
    # As the project writes them, a plain lock file and marker leave a folder empty.
    (tmp_path / "ours").mkdir()
    folders.FolderLock(str(tmp_path / "ours")).release()
    folders.write_marker(str(tmp_path / "ours"), "run")
    assert folders.is_empty(str(tmp_path / "ours"))


def test_evaluating_a_bare_model_keras_or_an_export_keeps_them_usable(
        copied_run, exported_tiny_run, tmp_path, monkeypatch):
    from keras_adahan import evaluate

    data_dir = exported_tiny_run["data_dir"]
    os.remove(copied_run / "metrics.json")
    monkeypatch.chdir(copied_run)  # `evaluate model.keras` read the run folder ''.
    evaluate.main(["model.keras", "--data_dir", data_dir])
    assert run_files.read_json(copied_run / "metrics.json")["num_questions"] == 12
    # An export folder holds the run's files, so it is evaluated the same way, and what that
    # writes does not make it a folder of the user's: --overwrite may still replace it.
    export_dir = tmp_path / "export"
    shutil.copytree(exported_tiny_run["export_dir"], export_dir)
    evaluate.main([str(export_dir), "--data_dir", data_dir])
    assert (export_dir / "metrics.json").is_file() and (export_dir / "plots").is_dir()
    folders.check_replaceable(str(export_dir), "export", "--output_dir")


def test_resume_removes_only_its_own_killed_writes(copied_run, exported_tiny_run):
    mine = [copied_run / ".tmp-notes.txt", copied_run / "plots" / ".tmp-draft.md",
            copied_run / ".tmp-2024-notes.txt", copied_run / "backup" / ".tmp-7-model.keras",
            copied_run / "backup" / "mine.weights.h5"]  # The last three were deleted.
    for path in mine:
        path.write_text("mine")
    killed = [copied_run / ".tmp-4242-model.keras", copied_run / "backup" / ".tmp-4242-state.json"]
    for path in killed:
        path.write_text("half written")
    # With its one epoch trained, the resumed run writes the model again and evaluates.
    train.main(tiny_flags(exported_tiny_run["data_dir"], copied_run, "--resume"))
    assert all(path.read_text() == "mine" for path in mine)
    assert not any(path.exists() for path in killed)


@pytest.mark.parametrize("refusal", [errno.EACCES, errno.EROFS])  # Another user's; a
def test_a_reader_locks_a_run_it_may_not_write(tmp_path, monkeypatch, refusal):  # mount.
    # Export (a reader) of a run on a read-only mount or of another user's run: opening the
    # lock file for writing is refused there (simulated: the tests run as root).
    run = tmp_path / "run"
    run.mkdir()
    real_open = os.open

    def read_only(path, flags, *args):
        if path.endswith(folders.LOCK) and flags & (os.O_RDWR | os.O_WRONLY | os.O_CREAT):
            raise OSError(refusal, os.strerror(refusal))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    folders.FolderLock(str(run), shared=True).release()  # No lock file: no writer ever.
    with pytest.raises(SystemExit, match="not a plain file this project can write"):
        folders.FolderLock(str(run))  # A writer must be able to lock it.
    monkeypatch.undo()
    trainer = folders.FolderLock(str(run))  # Made by a writer, who holds it now:
    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(SystemExit, match=f"is in use by process {os.getpid()}"):
        folders.FolderLock(str(run), shared=True)  # refused, read-only,
    trainer.release()
    reader = folders.FolderLock(str(run), shared=True)  # and held once the writer is done,
    monkeypatch.undo()
    with pytest.raises(SystemExit, match="is in use"):
        folders.FolderLock(str(run))  # against a writer.
    reader.release()


def test_the_dataset_build_lock_never_writes_through_a_link(tmp_path):
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    config_dir = tmp_path / "tfds" / "barn_vqa" / "tiny"
    config_dir.mkdir(parents=True)
    (config_dir / ".build.lock").symlink_to(mine)
    with pytest.raises(cli.UserError, match=r"cannot lock the dataset folder .*\.build\.lock' "
                                            r"is not a plain file this project can write"):
        data.prepare_dataset("tiny", str(tmp_path / "tfds"))
    assert mine.read_text() == "mine"


@pytest.mark.parametrize("in_the_way", ["barn_vqa", "barn_vqa/tiny", "downloads"])
def test_a_file_where_the_datasets_folders_go_is_named(tmp_path, in_the_way):
    mine = tmp_path / "tfds" / in_the_way
    mine.parent.mkdir(parents=True)
    mine.write_text("mine")
    # Was `[Errno 20] Not a directory` / `[Errno 17] File exists`, with no word of a folder.
    with pytest.raises(ValueError, match=f"'{re.escape(str(mine))}' is in the way of the "
                                         "dataset's folders: expected a folder there"):
        data.prepare_dataset("tiny", str(tmp_path / "tfds"))
    assert mine.read_text() == "mine"


@pytest.mark.parametrize("script", ["folder_farm", "input_pipeline"])
def test_benchmarks_draw_only_into_a_new_or_empty_folder(tmp_path, script):
    mine = user_folder(tmp_path / "mine")
    before = snapshot(mine)
    command = [sys.executable, os.path.join(os.path.dirname(__file__), "..", "benchmarks",
                                            f"{script}.py"), "--folder", str(mine)]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "holds other files; give a new or empty folder" in result.stderr.splitlines()[-1]
    assert snapshot(mine) == before


# export_latency.py is left out: it sets TensorFlow's thread counts when imported.
@pytest.mark.parametrize("script", [
    "beam_generation", "build_dataset", "cell_alignment", "erase_probe", "input_pipeline",
    "large_image_memory", "machine", "majority_baseline", "reference_fidelity",
    "relational_probe", "sort_of_clevr_table", "train_throughput", "variants_table"])
def test_benchmarks_fail_with_one_line(script, capsys):
    module = load_benchmark(script)
    run_dir = ["/nonexistent/run"] if script == "erase_probe" else []  # Its positional.
    with pytest.raises(SystemExit) as stop:  # They printed argparse's usage lines.
        cli.run(module.main, [*run_dir, "--bogus"])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines  # The program's name is pytest's (`-c` in its workers).
    assert re.fullmatch(r"error: \S+: unrecognized arguments: --bogus \(see --help\)", lines[0])
    if script == "erase_probe":  # A missing run folder was a traceback.
        with pytest.raises(SystemExit) as stop:
            cli.run(module.main, ["/nonexistent/run"])
        assert stop.value.code == 2
        assert capsys.readouterr().err.splitlines() == [
            "error: run folder '/nonexistent/run' does not exist"]


@pytest.mark.parametrize("script, argv, message", [
    # A traceback (IndexError, ZeroDivisionError, CalledProcessError) or a NumPy error.
    ("reference_fidelity", ["--images", "0"], "--images: expected a positive integer"),
    ("reference_fidelity", ["--draws", "0"], "--draws: expected a positive integer"),
    ("train_throughput", ["--steps", "0"], "--steps: expected a positive integer"),
    ("train_throughput", ["--rounds", "0"], "--rounds: expected a positive integer"),
    ("large_image_memory", ["--side", "50"], "--side: expected a multiple of 100"),
    # Drew empty question files, which every later run then reused.
    ("input_pipeline", ["--images", "0"], "--images: expected a positive integer"),
    # Checked when its build came, after the builds before it had run.
    ("beam_generation", ["--settings", "plain", "foo"],
     "--settings: expected plain or MODE:N, MODE one of in_memory, multi_threading"),
    ("beam_generation", ["--settings", "in_memory:x"], "received 'in_memory:x'"),
])
def test_benchmark_counts_are_refused_below_one(script, argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.run(load_benchmark(script).main, argv)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_start_up_lines_are_hidden_and_others_kept(capfd, monkeypatch):
    # What TensorFlow writes while it loads on a CPU where oneDNN is on, whatever
    # TF_CPP_MIN_LOG_LEVEL says, and a line a user must see (a warning, NumPy's explanation
    # of a build mismatch) that closing the stream lost.
    start_up = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to "
        "STDERR\n"
        "I0000 00:00:1796581308.366869   19335 port.cc:153] oneDNN custom operations are on.\n"
        "I0000 00:00:1796581308.403493   19335 cpu_feature_guard.cc:227] This TensorFlow "
        "binary is optimized to use available CPU instructions.\n"
        "To enable the following instructions: AVX2 AVX512F AMX_TILE, in other operations, "
        "rebuild TensorFlow with the appropriate compiler flags.\n")
    with cli._start_up_lines_hidden():
        os.write(2, start_up.encode())
        os.write(2, b"UserWarning: something the user must see\n")
        os.write(2, b"E0000 00:00:1796581310.1   19335 some.cc:1] a later error line\n")
    assert capfd.readouterr().err == "UserWarning: something the user must see\n"
    # No writable temporary folder (a read-only root): the stream is closed instead (every
    # tool stopped at import with "No usable temporary directory").
    def no_temporary_folder():
        raise FileNotFoundError("No usable temporary directory found")

    monkeypatch.setattr(cli.tempfile, "TemporaryFile", no_temporary_folder)
    with cli._start_up_lines_hidden():
        os.write(2, start_up.encode())
    assert capfd.readouterr().err == ""


def test_export_latency_names_a_bad_run_in_one_line():
    # In a process of its own: importing it sets TensorFlow's thread counts. `--run DIR`
    # gave "dictionary update sequence element #0 has length 1; 2 is required".
    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "export_latency.py")
    result = subprocess.run([sys.executable, script, "--run", "runs/reference"],
                            capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: export_latency.py: argument --run: expected PRESET=RUN_DIR, received "
        "'runs/reference' (see --help)"]
    # The level a process that imported TensorFlow hands the tools it starts: on a CPU
    # where oneDNN is on, its start-up notice came first.
    result = subprocess.run([sys.executable, script, "--run", "runs/reference"],
                            capture_output=True, text=True, timeout=300,
                            env={**ENV, "TF_CPP_MIN_LOG_LEVEL": "1"})
    assert result.stderr.splitlines() == [
        "error: export_latency.py: argument --run: expected PRESET=RUN_DIR, received "
        "'runs/reference' (see --help)"]
    result = subprocess.run([sys.executable, script, "--run", "default=/nonexistent/run",
                             "--presets", "default", "--no_reference"],
                            capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 2  # An ExportError traceback.
    assert result.stderr.splitlines()[-1] == "error: run folder '/nonexistent/run' does not exist"


def test_export_never_replaces_its_source_run_or_a_foreign_folder(exported_tiny_run,
                                                                   copied_run, tmp_path):
    from keras_adahan.export.__main__ import main

    parent = copied_run.parent
    before = snapshot(parent)
    for output in (parent, copied_run):
        with pytest.raises(cli.UserError, match="the source of this job") as stop:
            main([str(copied_run), "--output_dir", str(output), "--overwrite", "--skip_parity"])
        assert stop.value.code == 2
    mine = user_folder(tmp_path / "mine")
    with pytest.raises(cli.UserError, match="did not write"):
        main([str(copied_run), "--output_dir", str(mine), "--overwrite", "--skip_parity"])
    assert snapshot(parent) == before and (mine / "notes.txt").read_text() == "mine"


def test_a_killed_exports_staging_is_removed_by_the_next_export(exported_tiny_run, tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead_pid = int(finished.stdout)  # A process that has ended: what a SIGKILL leaves.
    output = tmp_path / "export"
    stale = tmp_path / f".tmp-{dead_pid}-export"
    stale.mkdir()
    folders.write_marker(str(stale), "export")  # Written first by every export.
    (stale / "saved_model").mkdir()
    unmarked = tmp_path / f".tmp-{dead_pid}-export-notes"  # Not this target's pattern.
    unmarked.mkdir()
    other = tmp_path / f".tmp-{dead_pid}-someone-elses"  # Another target's: not touched.
    other.mkdir()
    exporter.export(exported_tiny_run["run_dir"], str(output), quantizations=("float32",),
                    parity=False, log=lambda message: None)
    assert sorted(os.listdir(tmp_path)) == sorted(["export", other.name, unmarked.name])
    assert folders.folder_kind(str(output)) == "export"


def test_a_staging_folder_locked_on_another_machine_is_left_alone(tmp_path):
    # On a shared file system a process id of another machine's says nothing about it here.
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead_pid = int(finished.stdout)
    for host, kept in (("another-machine", True), (socket.gethostname(), False)):
        staging = tmp_path / f".tmp-{dead_pid}-run"
        staging.mkdir()
        folders.write_marker(str(staging), "run")
        (staging / folders.LOCK).write_text(f"process {dead_pid} on {host} since 2026-12-06")
        folders.remove_stale_staging(str(tmp_path / "run"))
        assert staging.exists() == kept, host
        shutil.rmtree(staging, ignore_errors=True)


def test_atomic_writes_reach_the_disk(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}"))
                        or real_fsync(fd))
    path = tmp_path / "metrics.json"
    run_files.write_json(str(path), {"accuracy": 1.0})
    assert json.loads(path.read_text()) == {"accuracy": 1.0}
    # The file under its temporary name, then the folder that holds the rename.
    assert synced[0].startswith(str(tmp_path / ".tmp-")) and synced[-1] == str(tmp_path)


# --- 2. One writer per run folder --------------------------------------------------------


HOLD_LOCK = """
import sys, time
from keras_adahan import folders
lock = folders.FolderLock(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_trainer_is_told_who_holds_the_run_folder(copied_run, exported_tiny_run):
    from keras_adahan import evaluate

    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(copied_run)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(copied_run)
        with pytest.raises(cli.UserError, match=f"in use by process {holder.pid} on ") as stop:
            train.main(tiny_flags(exported_tiny_run["data_dir"], copied_run, "--resume"))
        assert stop.value.code == 2
        assert snapshot(copied_run) == before  # Not even its temporary files were cleaned.
        # Evaluating the older model.keras meanwhile replaced the trainer's new metrics.json.
        with pytest.raises(cli.UserError, match=f"in use by process {holder.pid} on .*; wait "
                                                "for it to finish$"):
            evaluate.main([str(copied_run), "--data_dir", exported_tiny_run["data_dir"]])
        assert snapshot(copied_run) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The operating system released the lock with the killed process.
    folders.FolderLock(str(copied_run)).release()
    evaluate.main([str(copied_run), "--data_dir", exported_tiny_run["data_dir"]])


# --- 3. One line and exit status 2 from every command line tool ------------------------------


def run_tools(*argvs):
    """Runs `python -m ARGV...` for each argv at once (each mostly imports TensorFlow);
    their `CompletedProcess`es in order."""
    processes = [subprocess.Popen([sys.executable, "-m", *argv], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=ENV)
                 for argv in argvs]
    results = []
    try:
        for argv, process in zip(argvs, processes):
            stdout, stderr = process.communicate(timeout=300)
            results.append(subprocess.CompletedProcess(argv, process.returncode, stdout, stderr))
    finally:
        for process in processes:  # None left running when one times out.
            if process.poll() is None:
                process.kill()
    return results


def test_command_line_tools_fail_with_one_line(exported_tiny_run, tmp_path):
    data_dir, export_dir = exported_tiny_run["data_dir"], exported_tiny_run["export_dir"]
    a_file, empty_model = tmp_path / "notes.txt", tmp_path / "empty.tflite"
    a_file.write_text("mine")
    empty_model.write_bytes(b"")
    cases = [
        (["keras_adahan.train", *tiny_flags(data_dir, tmp_path / "r", "--k", "inf")],
         "argument --k: expected a finite number, received 'inf'"),
        (["keras_adahan.evaluate", str(tmp_path / "nowhere")], "does not exist"),
        (["keras_adahan.export", str(tmp_path / "nowhere"), "--output_dir", str(tmp_path / "e")],
         "does not exist"),
        (["keras_adahan.predict", "--model", os.path.join(export_dir, "vqa_float32.tflite"),
          "--image", str(tmp_path / "none.png"), "--question", "What animal is on the roof?"],
         "image file"),
        # A file where a folder is expected, or where an output folder's parent would be.
        (["keras_adahan.evaluate", str(a_file)], f"{str(a_file)!r} is a file, not a run folder"),
        (["keras_adahan.prepare", "--dataset", "farm"], "argument --dataset: unknown dataset"),
        # It fell back to the run's data folder; a file was "not built in notes.txt".
        (["keras_adahan.evaluate", exported_tiny_run["run_dir"], "--data_dir", ""],
         "argument --data_dir: expected a folder path, received an empty string"),
        (["keras_adahan.evaluate", exported_tiny_run["run_dir"], "--data_dir", str(a_file)],
         f"argument --data_dir: {str(a_file)!r} is a file, not a folder"),
        (["keras_adahan.train", *tiny_flags(data_dir, a_file / "run")],
         f"cannot be made: {str(a_file)!r} is a file, not a folder"),
        (["keras_adahan.export", exported_tiny_run["run_dir"], "--output_dir",
          str(a_file / "export")], f"cannot be made: {str(a_file)!r} is a file, not a folder"),
        # The model is checked before the labels.json beside it; an empty one says so.
        (["keras_adahan.predict", "--model", str(tmp_path / "none.tflite"), "--image",
          str(a_file), "--question", "hi"], "model file"),
        (["keras_adahan.predict", "--model", str(empty_model), "--image", str(a_file),
          "--question", "hi"], "is empty"),
    ]
    # --debug shows the traceback (and TensorFlow's own lines).
    debug_argv = ["keras_adahan.evaluate", str(tmp_path / "nowhere"), "--debug"]
    *results, debug = run_tools(*[argv for argv, _ in cases], debug_argv)
    for (argv, message), result in zip(cases, results):
        assert result.returncode == 2, (argv, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (
            argv, result.stderr)
        assert result.stdout == ""
    assert debug.returncode == 2 and "Traceback (most recent call last)" in debug.stderr


# --- 6. Artifacts are checked before use ---------------------------------------------------


def test_labels_of_another_model_are_refused(exported_tiny_run, tmp_path):
    from keras_adahan.predict import labels_fingerprint
    from keras_adahan.predict import predict

    export_dir = exported_tiny_run["export_dir"]
    model = os.path.join(export_dir, "vqa_float32.tflite")
    image = tmp_path / "image.png"
    from PIL import Image

    Image.new("RGB", (64, 64), (90, 160, 70)).save(image)
    labels = run_files.read_json(os.path.join(export_dir, "labels.json"))
    path = tmp_path / "labels.json"
    for change, message in (
        (dict(answers=labels["answers"][:-1]), "answers 3 \\(the model's: 4\\)"),
        (dict(image_size=64), "image_size 64 \\(the model's: 128\\)"),
        (dict(model_sha256={"vqa_other.tflite": "0" * 64}), "it was exported with vqa_other.tflite"),
        (dict(cell_edges=[0, 0.5, 1]), "cell edges 3 \\(the model's: 17\\)"),
    ):
        changed = {**labels, **change}
        changed["fingerprint"] = labels_fingerprint(changed)  # As another export would write.
        path.write_text(json.dumps(changed))
        with pytest.raises(ValueError, match=f"does not fit the model: {message}"):
            predict(model, str(image), ["What animal is near the hay?"], labels_path=str(path))
    # Cell edges that are not a split of the image, even with a fingerprint to match.
    for edges in ([0, 0.6, 0.5, 1], [0.1, 1], "even", [0, True], [0, float("nan"), 1],
                  [0, [0.5], 1], [0, 10**400, 1]):
        changed = {**labels, "cell_edges": edges}
        changed["fingerprint"] = labels_fingerprint(changed)
        path.write_text(json.dumps(changed))
        with pytest.raises(ValueError, match="is not a keras_adahan labels file \\(`cell_edges` "
                                             "must be increasing numbers from 0 to 1\\)"):
            predict(model, str(image), ["What animal is near the hay?"], labels_path=str(path))
    # An edited labels.json (answers in another order: every answer would get the wrong
    # name) is refused.
    path.write_text(json.dumps({**labels, "answers": labels["answers"][::-1]}))
    with pytest.raises(ValueError, match="is not the labels file its export wrote"):
        predict(model, str(image), ["What animal is near the hay?"], labels_path=str(path))


def test_non_finite_answers_are_an_error(exported_tiny_run, monkeypatch, tmp_path):
    from PIL import Image

    from keras_adahan import evaluate
    from keras_adahan.export.litert_vqa import LiteRTVQA
    from keras_adahan.predict import predict

    run = run_files.load_run(exported_tiny_run["run_dir"])
    weights = run.model.get_layer("answer_head").get_layer("answer_logits")
    kernel, bias = weights.get_weights()
    weights.set_weights([kernel, np.full_like(bias, np.nan)])
    dataset = data.prepare_dataset("tiny", exported_tiny_run["data_dir"], build=False)
    arrays = data.question_arrays(dataset, "test", run.vocabulary, 128, 16)
    with pytest.raises(ValueError, match="not finite .* for 12 of 12 questions"):
        evaluate.predict_split(run.model, arrays)

    real_answer = LiteRTVQA.answer
    monkeypatch.setattr(LiteRTVQA, "answer", lambda self, cells, ids: {
        **real_answer(self, cells, ids), "probabilities": np.full(4, np.nan, np.float32)})
    image = tmp_path / "image.png"
    Image.new("RGB", (64, 64), (90, 160, 70)).save(image)
    model = os.path.join(exported_tiny_run["export_dir"], "vqa_float32.tflite")
    with pytest.raises(ValueError, match="non-finite probabilities"):
        predict(model, str(image), ["What animal is near the hay?"])


# --- 7. Datasets ---------------------------------------------------------------------------


@pytest.fixture
def copied_data(exported_tiny_run, tmp_path):
    path = tmp_path / "tfds"
    shutil.copytree(exported_tiny_run["data_dir"], path)
    return str(path), str(path / "barn_vqa" / "tiny" / "1.0.0")


def test_a_damaged_dataset_is_refused_with_its_repair_or_rebuilt(copied_data, capsys):
    data_dir, version = copied_data
    shard = glob.glob(os.path.join(version, "*train.tfrecord*"))[0]
    half = os.path.getsize(shard) // 2
    os.truncate(shard, half)
    with pytest.raises(ValueError, match=r"damaged: the train split's shards hold .* bytes "
                                         r"where .* were written\. .*python -m "
                                         r"keras_adahan.prepare --dataset tiny --data_dir"):
        data.prepare_dataset("tiny", data_dir, build=False)
    # The trainer's path keeps the damaged copy aside and builds it again.
    dataset = data.prepare_dataset("tiny", data_dir)
    assert data.damaged(dataset.builder) is None and dataset.num_examples("train") == 8
    aside = glob.glob(version + ".damaged-*")  # Not deleted: moved out of the way.
    assert len(aside) == 1
    assert os.path.getsize(os.path.join(aside[0], os.path.basename(shard))) == half
    assert "moved it to" in capsys.readouterr().out


@pytest.mark.parametrize("damage, message", [
    (lambda v: os.remove(glob.glob(os.path.join(v, "*test.tfrecord*"))[0]),
     "the test split's shard .* is missing"),
    (lambda v: os.remove(os.path.join(v, "dataset_info.json")), "it has no dataset_info.json"),
    (lambda v: open(os.path.join(v, "dataset_info.json"), "w").write("{not json"),
     "cannot be read .*Move its folder away and build it again"),
])
def test_damaged_dataset_files_are_named(copied_data, damage, message):
    data_dir, version = copied_data
    damage(version)
    with pytest.raises(ValueError, match=message):
        data.prepare_dataset("tiny", data_dir, build=False)


# --- Resume --------------------------------------------------------------------------------


def test_resume_refuses_another_runs_settings_and_a_damaged_backup(copied_run,
                                                                   exported_tiny_run):
    data_dir = exported_tiny_run["data_dir"]
    seed = run_files.read_json(copied_run / "config.json")["train"]["seed"]
    with pytest.raises(cli.UserError, match=f"--seed {seed} \\(given 7\\)"):
        train.main(tiny_flags(data_dir, copied_run, "--resume", "--seed", "7", "--epochs", "2"))
    with pytest.raises(cli.UserError, match="--dataset 'tiny' \\(given 'tiny_randomized'\\)"):
        flags = tiny_flags(data_dir, copied_run, "--resume", "--epochs", "2")
        flags[flags.index("tiny")] = "tiny_randomized"
        train.main(flags)
    backup = copied_run / "backup"
    weights = backup / run_files.read_json(backup / STATE)["weights"]
    os.truncate(weights, 100)
    with pytest.raises(ValueError, match="the training backup .* is damaged: .* does not open"):
        train.main(tiny_flags(data_dir, copied_run, "--resume", "--epochs", "2"))
    (backup / STATE).write_text("{")
    with pytest.raises(ValueError, match="is damaged: .*state.json' is unreadable"):
        train.main(tiny_flags(data_dir, copied_run, "--resume", "--epochs", "2"))


def test_table_scripts_refuse_a_finished_run_with_other_settings(copied_run,
                                                                 exported_tiny_run):
    flags = tiny_flags(exported_tiny_run["data_dir"], copied_run, "--dtype", "float32")
    assert train.settings_differences(copied_run, flags) == []
    assert train.settings_differences(copied_run, flags + ["--learning_rate", "0.01"]) == [
        "learning_rate 0.001 (asked 0.01)"]
    assert train.settings_differences(copied_run, flags + ["--dtype", "mixed_bfloat16"]) == [
        "dtype 'float32' (asked 'mixed_bfloat16')"]
    # --dtype auto: the run saved what auto chose, which it matches whatever that was.
    assert train.settings_differences(copied_run, flags + ["--dtype", "auto"]) == []
    # benchmarks/variants_table.py would have printed the 1-epoch run as a 2-epoch one.
    runs = copied_run.parent
    os.rename(copied_run, runs / "tiny-default-han-seed0")
    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "variants_table.py")
    result = subprocess.run(
        [sys.executable, script, "--dataset", "tiny", "--variants", "han", "--seeds", "0",
         "--epochs", "2", "--runs_dir", str(runs)], capture_output=True, text=True, env=ENV)
    assert result.returncode == 2  # As every refusal (it was 1, with no "error: ").
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {runs / 'tiny-default-han-seed0'} holds a run trained with other settings: epochs 1 "
        "(asked 2); pass another --runs_dir")
    # A damaged metrics.json of a finished run: it said "Expecting value: line 1 column 1".
    metrics = runs / "tiny-default-han-seed0" / "metrics.json"
    metrics.write_text("garbage")
    result = subprocess.run(
        [sys.executable, script, "--dataset", "tiny", "--variants", "han", "--seeds", "0",
         "--epochs", "1", "--runs_dir", str(runs)], capture_output=True, text=True, env=ENV)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: '{metrics}' is not a readable JSON file (Expecting value: line 1 column 1 "
        f"(char 0)); `python -m keras_adahan.evaluate {metrics.parent}` rewrites it")
    assert metrics.read_text() == "garbage"


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "farm"], "argument --dataset: unknown dataset 'farm'"),
    # Was a traceback after every run had trained.
    (["--test_dataset", "farm"], "argument --test_dataset: unknown dataset 'farm'"),
    (["--epochs", "0"], "argument --epochs: expected a positive integer, received '0'"),
])
def test_variants_table_refuses_bad_flags_before_training(tmp_path, argv, message):
    with pytest.raises(cli.UserError, match=message):
        load_benchmark("variants_table").main(["--runs_dir", str(tmp_path / "runs"), *argv])
    assert not (tmp_path / "runs").exists()


def test_variants_table_names_a_failed_trainer_in_one_line(tmp_path, capfd):
    """It was a CalledProcessError traceback."""
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "tiny-default-han-seed0").write_text("mine")  # Where the run would go.
    with pytest.raises(SystemExit) as stop:
        load_benchmark("variants_table").main(
            ["--dataset", "tiny", "--variants", "han", "--seeds", "0", "--runs_dir", str(runs),
             "--quiet"])
    assert stop.value.code == 2  # As every refusal; it was 1.
    assert str(stop.value) == (f"the trainer of {runs / 'tiny-default-han-seed0'} stopped with "
                               "exit status 2 (its message is above); the runs before it are "
                               "kept, and the same command reuses them")
    assert "is a file, not a folder" in capfd.readouterr().err  # The trainer's own line.
    assert (runs / "tiny-default-han-seed0").read_text() == "mine"


@pytest.mark.parametrize("script, flags, named", [
    ("variants_table", ["--seed=5"], "--seed"),
    ("variants_table", ["--var", "adahan", "--k", "3"], "--variant"),
    ("sort_of_clevr_table", ["--dtype", "mixed_bfloat16", "--epochs", "4", "--seed", "1"],
     "--epochs, --seed"),
    # A setup's own flags: han_rn_warmup trains at 1e-4, adahan_rn with --set max_cells=7.
    ("sort_of_clevr_table", ["--setups", "han_rn_warmup", "--epochs", "13", "--",
                             "--learning_rate", "3e-4"], "--learning_rate"),
    ("sort_of_clevr_table", ["--setups", "adahan_rn", "--", "--set", "max_cells=5",
                             "--set", "aggregate_norm=false"], "--set max_cells"),
    ("sort_of_clevr_table", ["--setups", "han_rn_more_scenes", "--", "--init_from", "."],
     "--init_from"),
])
def test_table_scripts_refuse_flags_that_override_their_own(tmp_path, script, flags, named):
    """The flags after -- come last on each trainer command, so they would win: `-- --seed 5`
    would train every "seed" alike and the table would print their spread."""
    if "--" not in flags:
        flags = ["--", *flags]
    with pytest.raises(cli.UserError) as stop:
        load_benchmark(script).main(["--runs_dir", str(tmp_path / "runs"), *flags])
    assert str(stop.value) == (f"the flags after -- set {named}, which this script sets for "
                               "that run itself: use the script's own flags")
    assert not os.path.exists(tmp_path / "runs")


def test_table_scripts_check_every_runs_flags_before_training(tmp_path):
    """A flag one of the runs refuses stops the table before any run trains."""
    runs = tmp_path / "runs"
    for script, argv in (
            ("variants_table", ["--variants", "adahan", "han", "--", "--threshold", "0.2"]),
            ("sort_of_clevr_table", ["--setups", "adahan_rn", "han_rn", "--",
                                     "--threshold", "0.1"])):
        with pytest.raises(cli.UserError, match="is AdaHAN's; it needs --variant adahan, "
                                                "received --variant han"):
            load_benchmark(script).main(["--runs_dir", str(runs), *argv])
        assert not runs.exists()


def test_resume_keeps_the_warmup_and_a_cosine_schedules_epochs(tmp_path):
    saved = {"dataset": "tiny", "seed": 0, "preset": "default", "batch_size": 8,
             "learning_rate": 0.001, "lr_schedule": "cosine", "init_from": None,
             "warmup_types": None, "warmup_epochs": 0, "epochs": 10,
             "restore_best_weights": True}
    (tmp_path / "config.json").write_text(json.dumps({"train": saved}))
    command = dict(saved)  # The run's own flags.

    def resume(**asked):
        run_files.check_resume_settings(argparse.Namespace(**{**command, **asked}), tmp_path)

    resume()
    # The cosine rate spans the run's epochs: more of them would raise it mid-run.
    with pytest.raises(cli.UserError, match=r"--epochs 10 \(given 20\)"):
        resume(epochs=20)
    with pytest.raises(cli.UserError, match=r"--warmup_types None \(given \['shape'\]\), "
                                            r"--warmup_epochs 0 \(given 2\)"):
        resume(warmup_types=["shape"], warmup_epochs=2)
    # A run saved before the warm-up and --init_from existed trained without them.
    for name in ("warmup_types", "warmup_epochs", "init_from"):
        del saved[name]
    (tmp_path / "config.json").write_text(json.dumps({"train": saved}))
    with pytest.raises(cli.UserError, match=r"--warmup_epochs 0 \(given 2\)"):
        resume(warmup_types=["shape"], warmup_epochs=2)
    with pytest.raises(cli.UserError, match=r"--init_from None \(given 'run'\)"):
        resume(init_from="run")
    # With 6 epochs done, asking for 6 trains nothing (it writes the model and evaluates):
    # the warm-up flags, which need --epochs above them, may be left out.
    (tmp_path / "backup").mkdir()
    h5py.File(tmp_path / "backup" / "epoch-0006.weights.h5", "w").close()
    (tmp_path / "backup" / STATE).write_text(json.dumps({
        "epoch": 6, "weights": "epoch-0006.weights.h5", "history": [{"loss": 1.0}] * 6}))
    saved.update(warmup_types=["shape"], warmup_epochs=2)
    (tmp_path / "config.json").write_text(json.dumps({"train": saved}))
    resume(epochs=6)
    with pytest.raises(cli.UserError, match=r"--warmup_epochs 2 \(given 0\)"):
        resume(epochs=7)
    # Fewer epochs than trained would record a 6-epoch model as a 5-epoch run.
    with pytest.raises(cli.UserError, match="has trained 6 epochs; pass --epochs 6 or more "
                                            r"\(received --epochs 5\)"):
        resume(epochs=5)
    # A run that kept no best epoch, resumed to keep one, would choose among the resumed
    # epochs only (and the other way round, drop the best it kept).
    saved.update(restore_best_weights=False)
    (tmp_path / "config.json").write_text(json.dumps({"train": saved}))
    with pytest.raises(cli.UserError, match=r"--restore_best_weights False \(given True\)"):
        resume(epochs=7, restore_best_weights=True)
    resume(epochs=6, restore_best_weights=True)  # Nothing left to train: it picks the last.
    # Runs saved before the flag was recorded kept their last epoch's weights (it began as
    # an opt-in flag).
    del saved["restore_best_weights"]
    (tmp_path / "config.json").write_text(json.dumps({"train": saved}))
    resume(epochs=10, warmup_types=["shape"], warmup_epochs=2, restore_best_weights=False)
    with pytest.raises(cli.UserError, match=r"--restore_best_weights False \(given True\)"):
        resume(epochs=10, warmup_types=["shape"], warmup_epochs=2, restore_best_weights=True)


def test_lock_holder_is_released_when_killed_mid_run(copied_run, exported_tiny_run):
    """SIGKILL + --resume still works: the lock dies with the process."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(copied_run)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    time.sleep(0.1)
    metrics = train.main(tiny_flags(exported_tiny_run["data_dir"], copied_run, "--resume",
                                    "--epochs", "2"))
    assert metrics["num_questions"] == 12
    assert len(train.read_history(str(copied_run / "history.csv"))["loss"]) == 2


def test_overlay_never_replaces_a_users_file(exported_tiny_run, tmp_path):
    from PIL import Image

    from keras_adahan.predict import main

    model = os.path.join(exported_tiny_run["export_dir"], "vqa_float32.tflite")
    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), (90, 160, 70)).save(photo)
    mine = tmp_path / "mine.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(mine)
    before = snapshot(tmp_path)
    for overlay, message in ((photo, "is an input of this command"), (model, "is an input"),
                             (mine, "is not an overlay this tool wrote")):
        with pytest.raises(cli.UserError, match=message):
            main(["--model", model, "--image", str(photo), "--question",
                  "What animal is near the hay?", "--overlay", str(overlay)])
    assert snapshot(tmp_path) == before
    # Its own overlay it writes, and writes again.
    for _ in range(2):
        main(["--model", model, "--image", str(photo), "--question",
              "What animal is near the hay?", "--overlay", str(tmp_path / "where.png")])
    assert (tmp_path / "where.png").exists()


def test_edited_run_files_and_backup_state_are_refused(copied_run, exported_tiny_run):
    original = (copied_run / "answers.json").read_bytes()
    answers = json.loads(original)["answers"]
    (copied_run / "answers.json").write_text(json.dumps(
        {"answers": answers[::-1]}))  # Every label would get another's name.
    with pytest.raises(ValueError, match="answers.json' is not the file this run was trained"):
        run_files.load_run(str(copied_run))
    (copied_run / "answers.json").write_bytes(original)
    run = run_files.load_run(str(copied_run))
    # A model.keras copied from another run: with as many answers it was taken without a
    # word (with another count, answers.json was blamed).
    model = (copied_run / "model.keras").read_bytes()
    units = run.config["model"]["rnn_units"]
    VQAModel({**run.config["model"], "rnn_units": 2 * units}).save(copied_run / "model.keras")
    with pytest.raises(ValueError, match=f"model.keras' is not the model '.*config.json' "
                                         f"describes: rnn_units {units} .model.keras {2 * units}"):
        run_files.load_run(str(copied_run))
    (copied_run / "model.keras").write_bytes(model)
    run_files.load_run(str(copied_run))
    state = run_files.read_json(copied_run / "backup" / STATE)
    best = {"epoch": 1, "weights": state["weights"], "value": 0.5}
    # A damaged "best" was a KeyError or TypeError traceback, or loaded weights from outside.
    for bad in ({"epoch": -3}, {"epoch": "1"}, {"history": []}, {"weights": "../x.h5"},
                {"seconds": -1.0}, {"best": [1]}, {"best": {**best, "weights": "../x.h5"}},
                {"best": {"epoch": 1, "weights": state["weights"]}},
                {"best": {**best, "epoch": state["epoch"] + 1}},
                {"best": {**best, "weights": "gone.weights.h5"}}):
        (copied_run / "backup" / STATE).write_text(json.dumps({**state, **bad}))
        with pytest.raises(ValueError, match="the training backup .* is damaged"):
            train.main(tiny_flags(exported_tiny_run["data_dir"], copied_run, "--resume",
                                  "--epochs", "2"))


def test_a_run_folder_named_like_a_model_file_and_a_config_without_data_dir(copied_run):
    named = copied_run.parent / "run.keras"  # The trainer writes such a folder.
    copied_run.rename(named)
    # It was taken for a model file and its parent loaded: "... is not a complete run folder".
    assert run_files.load_run(str(named)).answers
    config = json.loads((named / "config.json").read_text())
    del config["train"]["data_dir"]  # evaluate failed with KeyError: 'data_dir'.
    (named / "config.json").write_text(json.dumps(config))
    assert run_files.load_run(str(named)).config["train"]["data_dir"] is None
    config["train"]["data_dir"] = 5
    (named / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config.json' is not a run's config .* \"data_dir\", "
                                         "a string or null"):
        run_files.load_run(str(named))
    config["train"]["data_dir"] = None
    for checksums in (["vocabulary.json"], {"../../notes.txt": "0" * 64}):
        (named / "config.json").write_text(json.dumps({**config, "checksums": checksums}))
        with pytest.raises(ValueError, match=r"config.json' is not a run's config: its "
                                             r"\"checksums\" must map"):
            run_files.load_run(str(named))  # An AttributeError traceback; a file outside.


def test_another_keras_file_is_not_taken_for_its_folders_model(copied_run, tmp_path):
    # Its folder's model.keras was loaded in its place: evaluate wrote that model's figures
    # under the other file's name, export shipped it.
    from keras_adahan import evaluate

    other = copied_run / "model_epoch4.keras"
    shutil.copy(copied_run / "model.keras", other)
    before = snapshot(copied_run)
    expected = f"'{other}' is not a run: expected a run folder of keras_adahan.train"
    with pytest.raises(FileNotFoundError, match=expected):
        run_files.load_run(str(other))
    with pytest.raises(cli.UserError, match=expected):
        evaluate.main([str(other)])
    with pytest.raises(exporter.ExportError, match=expected):
        exporter.export(str(other), str(tmp_path / "export"), quantizations=("float32",))
    assert snapshot(copied_run) == before and not (tmp_path / "export").exists()
    assert run_files.load_run(str(copied_run / "model.keras")).answers  # Its own is taken.


def test_a_swap_killed_between_its_renames_gets_the_old_folder_back(tmp_path):
    # What a kill between `swap_into_place`'s two renames leaves: the old folder moved
    # aside, the new one still in staging, nothing at the target.
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead = int(finished.stdout)
    # The aside's name now, and before 2026-12-06 (which reads as `old-run`'s staging too).
    for aside in (f".old-{dead}-run", f".tmp-{dead}-old-run"):
        old, new = tmp_path / aside, tmp_path / f".tmp-{dead}-run"
        old.mkdir()
        folders.write_marker(str(old), "run")
        (old / "model.keras").write_text("the old run")
        new.mkdir()
        # A job on `old-run` first: the aside may be `run`'s only copy (it was deleted).
        folders.remove_stale_staging(str(tmp_path / "old-run"))
        assert (old / "model.keras").read_text() == "the old run"
        folders.remove_stale_staging(str(tmp_path / "run"))
        assert os.listdir(tmp_path) == ["run"]
        assert (tmp_path / "run" / "model.keras").read_text() == "the old run"
        shutil.rmtree(tmp_path / "run")
    # Both kinds of folder a killed swap of `old-run` leaves are taken for its own.
    run = tmp_path / "run"
    run.mkdir()
    for leftover in (f".old-{dead}-old-run", f".tmp-{dead}-old-run"):
        (tmp_path / leftover).mkdir()
        folders.write_marker(str(tmp_path / leftover), "run")
    folders.remove_stale_staging(str(tmp_path / "old-run"))
    assert sorted(os.listdir(tmp_path)) == ["old-run", "run"]  # Aside put back; staging gone.


def test_questions_longer_than_the_model_reads_are_named_before_training(tmp_path):
    folder = tmp_path / "long"
    (folder / "img").mkdir(parents=True)
    from PIL import Image

    for i in range(12):
        Image.new("RGB", (16, 16), (i * 20, 0, 0)).save(folder / "img" / f"{i}.png")
    long_question = "is " + "very " * 20 + "red?"
    for split, images in (("train", range(8)), ("validation", range(8, 10)),
                          ("test", range(10, 12))):
        with open(folder / f"{split}.jsonl", "w") as f:
            for i in images:
                f.write(json.dumps({"image": f"img/{i}.png", "answer": "yes",
                                    "question": long_question if i == 3 else "is it red?"}) + "\n")
    with pytest.raises(ValueError, match="22 words; the model reads at most 16 \\(a model "
                                         "trained with --set max_question_length=N reads N"):
        train.main(["--dataset", f"folder:{folder}", "--epochs", "1", "--data_dir",
                    str(tmp_path / "tfds"), "--output_dir", str(tmp_path / "run")])


def test_evaluate_on_another_dataset_names_long_questions_and_unknown_words(
        copied_run, exported_tiny_run, tmp_path):
    from PIL import Image

    from keras_adahan import evaluate

    answer = run_files.load_run(str(copied_run)).answers[0]
    data_dir = str(tmp_path / "tfds")

    def farm(name, test_questions):
        folder = tmp_path / name
        (folder / "img").mkdir(parents=True)
        splits = {"train": ["What animal is near the hay?"] * 2,
                  "validation": ["What animal is near the hay?"], "test": test_questions}
        image = 0
        for split, texts in splits.items():
            with open(folder / f"{split}.jsonl", "w") as f:
                for question in texts:
                    Image.new("RGB", (16, 16), (image * 40, 90, 0)).save(
                        folder / "img" / f"{image}.png")
                    f.write(json.dumps({"image": f"img/{image}.png", "question": question,
                                        "answer": answer}) + "\n")
                    image += 1
        data.prepare_dataset(f"folder:{folder}", data_dir)
        return [str(copied_run), "--dataset", f"folder:{folder}", "--data_dir", data_dir]

    # It printed an accuracy on questions it could not read, and nothing else.
    with pytest.warns(UserWarning, match=r"1 of the 2 questions of .*'s test split hold words "
                                         r"the model never saw in training, read as unknown: "
                                         r"'quel', 'est', 'près', 'du', 'foin'$"):
        evaluate.main(farm("french", ["Quel animal est près du foin ?",
                                      "What animal is near the hay?"]))
    # It stopped inside TensorFlow's input pipeline, its message behind the graph's.
    with pytest.raises(cli.UserError, match=r"^.*'s test split asks 'What animal is near "
                                            r"the hay What .*', 24 words; the model reads at "
                                            r"most 16 \(a model trained"):
        evaluate.main(farm("long", ["What animal is near the hay " * 4,
                                    "What animal is near the hay?"]))


def test_evaluation_files_of_different_folders_never_share_a_name():
    from keras_adahan.evaluate import file_tag

    names = ["folder:/data/farm/a", "folder:/data/farm-a", "folder:/data/farm a", "classic"]
    tags = [file_tag(name) for name in names]
    assert len(set(tags)) == len(names)  # The first three were all folder-data-farm-a.
    assert tags[-1] == "classic" and tags[0].startswith("folder-data-farm-a-")
    assert all(set(tag) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
               for tag in tags)
