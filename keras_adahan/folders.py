"""The one place that decides which folders the project may replace, and how.

Rules (docs/reliability.md):
- A folder is replaced only if it carries this project's marker (`.keras_adahan`, written
  when a run or export folder is made; folders from before the marker are recognized by
  their files) of the same kind, and is not and does not contain the source of the job.
- A replacement is written aside (`.tmp-PID-NAME` beside the target) and swapped in only
  when it has fully succeeded; a failed or killed job leaves the old folder as it was, and
  its staging folder is removed by the next job on that target.
- One writer per run folder: a lock on `FOLDER/.lock`, held for the whole job and released
  by the operating system when the process dies (so SIGKILL + `--resume` works).
"""

import contextlib
import errno
import os
import re
import shutil
import socket
import stat
import time

from keras_adahan.cli import UserError

MARKER = ".keras_adahan"
LOCK = ".lock"
# What each kind of folder holds when the project made it, as paths inside it (folders
# too, so that one of the user's is seen even when empty); anything else is a user's, and
# the folder is then not replaced. Both kinds hold a run's files, and what
# `python -m keras_adahan.evaluate FOLDER` writes.
_RUN_FILES = r"model\.keras|vocabulary\.json|answers\.json|config\.json|"
_EVALUATION = (r"metrics(_[^/]*)?\.json|"
               r"plots|plots/(history|attention(_[^/]*)?|kept_cells(_[^/]*)?)\.png|")
_OWN_PATHS = {
    "run": re.compile(_RUN_FILES + _EVALUATION +
                      r"history\.csv|training\.json|"
                      r"backup|backup/state\.json|backup/epoch-\d+\.weights\.h5"),
    "export": re.compile(_RUN_FILES + _EVALUATION +
                         r"labels\.json|export_report\.json|vqa_\w+\.tflite|"
                         r"saved_model|saved_model/(saved_model|fingerprint)\.pb|"
                         r"saved_model/assets|saved_model/variables|"
                         r"saved_model/variables/variables\.(index|data-\d+-of-\d+)"),
}


# A file or folder this project is writing (`run_files.atomic_path`, `staging_path`).
_WRITING = re.compile(r"\.tmp-\d+-")


def write_marker(folder, kind):
    """Marks `folder` as a `kind` folder of this project (see `folder_kind`)."""
    from keras_adahan import run_files

    run_files.write_json(os.path.join(folder, MARKER), {"kind": kind})


def folder_kind(folder):
    """"run", "export" or None: what this project made `folder` as, if anything."""
    from keras_adahan import run_files

    try:
        return run_files.read_json(os.path.join(folder, MARKER)).get("kind")
    except (OSError, ValueError, AttributeError):
        pass
    # Made before the marker existed: recognized by the files only this project writes.
    names = set(os.listdir(folder)) if os.path.isdir(folder) else set()
    if "export_report.json" in names:
        try:
            report = run_files.read_json(os.path.join(folder, "export_report.json"))
            if str(report.get("format", "")).startswith("keras_adahan.export/"):
                return "export"
        except (OSError, ValueError, AttributeError):
            pass
    if {"config.json", "vocabulary.json", "answers.json"} <= names:
        try:
            config = run_files.read_json(os.path.join(folder, "config.json"))
            if {"model", "train"} <= set(config):
                return "run"
        except (OSError, ValueError, TypeError):
            pass
    return None


def is_empty(folder):
    """Missing, or holding nothing but this project's marker and lock (as plain files: a
    folder of the user's by either name is not empty)."""
    if not os.path.exists(folder):
        return True
    return os.path.isdir(folder) and all(
        name in (MARKER, LOCK) and stat.S_ISREG(os.lstat(os.path.join(folder, name)).st_mode)
        for name in os.listdir(folder))


def is_being_written(path, kind="run"):
    """Whether `path`, inside a `kind` folder ('/'-separated), is a temporary file of a write
    of this project's (`run_files.atomic_path`): `.tmp-PID-` before the name of a file the
    folder holds at that place. A user's `.tmp-2024-notes` is not one."""
    folder, _, name = path.rpartition("/")
    match = _WRITING.match(name)
    if match is None:
        return False
    own = name[match.end():]
    own_path = f"{folder}/{own}" if folder else own
    return own_path == MARKER or _OWN_PATHS[kind].fullmatch(own_path) is not None


def check_creatable(folder, flag):
    """Raises `UserError` if a file, or a link to nothing, stands where `folder` or one of
    its parents would be."""
    path = os.path.abspath(folder)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        if os.path.islink(path):
            raise UserError(f"{flag} {folder!r} cannot be made: {path!r} is a symbolic link "
                            f"to {os.readlink(path)!r}, which does not exist")
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise UserError(f"{flag} {folder!r} cannot be made: {path!r} is a file, not a folder")


def check_replaceable(folder, kind, flag, protect=()):
    """Raises `UserError` unless `folder` may be replaced by a new `kind` folder.

    Args:
        folder: str. The target.
        kind: "run" or "export".
        flag: str. The option whose value `folder` is, for the message.
        protect: paths that must survive: `folder` may not be one of them or contain one.
    """
    target = os.path.realpath(folder)
    for path in protect:
        path = os.path.realpath(path)
        if path == target or path.startswith(target + os.sep):
            raise UserError(f"{flag} {folder!r} is or contains {path!r}, the source of this "
                            f"job; choose another {flag}")
    if os.path.islink(os.path.abspath(folder)):  # abspath: `link/` is the link too.
        raise UserError(f"{flag} {folder!r} is a symbolic link; give the folder itself")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UserError(f"{flag} {folder!r} is a file, not a folder")
    if is_empty(folder):
        return
    found = folder_kind(folder)
    if found != kind:
        what = (f"{'an' if found == 'export' else 'a'} {found} folder" if found
                else "files this project did not write")
        raise UserError(
            f"{flag} {folder!r} holds {what} ({_some_names(folder)}); --overwrite replaces "
            f"only {'an' if kind == 'export' else 'a'} {kind} folder of keras-adahan. "
            f"Choose another {flag}"
        )
    foreign = _foreign_paths(folder, kind)
    if foreign:
        raise UserError(
            f"{flag} {folder!r} is a {kind} folder that also holds files of yours "
            f"({', '.join(foreign[:4])}); --overwrite would delete them. Move them out first, "
            f"or choose another {flag}")
    cwd = os.path.realpath(os.getcwd())  # A folder in use cannot be moved aside.
    if cwd == target or cwd.startswith(target + os.sep):
        raise UserError(f"{flag} {folder!r} is or contains the current folder; run from "
                        f"another folder, or choose another {flag}")


def _foreign_paths(folder, kind):
    """The paths inside `folder` (its subfolders too) that a `kind` folder of this project
    does not hold: a user's files, which replacing the folder would delete."""
    foreign = []
    for parent, subfolders, files in os.walk(folder):
        inside = os.path.relpath(parent, folder)
        for name in sorted(subfolders + files):
            path = name if inside == "." else f"{inside}/{name}".replace(os.sep, "/")
            writing = is_being_written(path, kind)
            ours = (writing or (inside == "." and name in (MARKER, LOCK))
                    or _OWN_PATHS[kind].fullmatch(path))
            if not ours:
                foreign.append(path)
            if name in subfolders and (not ours or writing):
                subfolders.remove(name)  # Named already, or ours in the making.
    return foreign


def _some_names(folder):
    names = sorted(os.listdir(folder))
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def staging_path(folder):
    """Where a replacement of `folder` is written before it is swapped in."""
    parent, name = os.path.split(os.path.abspath(folder))
    return os.path.join(parent, f".tmp-{os.getpid()}-{name}")


@contextlib.contextmanager
def staged(folder, kind):
    """Yields a new folder, marked as a `kind` folder of ours, in which to build `folder`'s
    replacement; swapped onto `folder` (`swap_into_place`) when the block ends without an
    error, deleted otherwise. What a killed job left beside `folder` is removed first."""
    from keras_adahan import run_files

    remove_stale_staging(folder)
    staging = staging_path(folder)
    if os.path.isdir(staging) and (folder_kind(staging) == kind or is_empty(staging)):
        shutil.rmtree(staging)  # This process id's, left by an earlier process.
    try:
        os.makedirs(staging)
        write_marker(staging, kind)
        yield staging
        run_files.fsync_tree(staging)
        swap_into_place(staging, folder, kind)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_stale_staging(folder):
    """Removes staging folders of `folder` whose process is gone (a killed job's)."""
    parent, name = os.path.split(os.path.abspath(folder))
    if not os.path.isdir(parent):
        return
    # A swap's aside copy is `.old-PID-NAME`; before 2026-12-06 it was `.tmp-PID-old-NAME`,
    # which reads as the staging folder of `old-NAME` too.
    pattern = re.compile(rf"(?:\.old-(?P<aside>\d+)|\.tmp-(?P<staging>\d+)(?P<legacy>-old)?)"
                         rf"-{re.escape(name)}$")
    asides_first = sorted(os.listdir(parent), key=lambda e: not e.startswith(".old-")
                          and "-old-" not in e)
    for entry in asides_first:
        match = pattern.match(entry)
        if not match:
            continue
        pid = int(match["aside"] or match["staging"])
        if pid == os.getpid() or _alive(pid):
            continue
        aside = match["aside"] is not None or match["legacy"] is not None
        path = os.path.join(parent, entry)
        if _locked_on_another_machine(path):
            continue  # Its process id says nothing here: a shared file system's other job.
        if not os.path.isdir(path) or os.path.islink(path) or (
                folder_kind(path) is None and not is_empty(path)):
            continue  # Not a staging folder of ours: left alone.
        if (not aside and name.startswith("old-")
                and not os.path.lexists(os.path.join(parent, name[len("old-"):]))):
            continue  # Maybe the folder NAME[4:]'s only copy, moved aside by an older swap.
        if aside and not os.path.lexists(folder):
            # Killed between the two renames of a swap: the old folder was moved aside and
            # the new one not yet in place. Put the old one back.
            os.replace(path, folder)
        else:
            shutil.rmtree(path, ignore_errors=True)


def _locked_on_another_machine(path):
    """Whether `path`'s lock file (see `FolderLock`) names another machine as its holder."""
    try:
        with open(os.path.join(path, LOCK), encoding="utf-8") as f:
            holder = re.search(r" on (\S+) since ", f.read())
    except (OSError, ValueError):
        return False
    return holder is not None and holder.group(1) != socket.gethostname()


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def swap_into_place(staging, folder, kind):
    """Renames the finished `staging` (a `kind` folder) onto `folder`; the old `folder` is
    deleted only then.

    Raises:
        UserError: files of the user's reached `folder` while the job ran. Both folders are
            kept: `folder` as it is, the new one beside it as `FOLDER.new` (or `.new-N`).
    """
    from keras_adahan import run_files

    parent, name = os.path.split(os.path.abspath(folder))
    old = os.path.join(parent, f".old-{os.getpid()}-{name}")  # Never a staging folder's name.
    if os.path.isdir(folder) and not os.path.islink(folder):
        foreign = [] if is_empty(folder) else _foreign_paths(folder, kind)
        if foreign:
            kept = os.path.join(parent, f"{name}.new")
            number = 1
            while os.path.lexists(kept):
                number += 1
                kept = os.path.join(parent, f"{name}.new-{number}")
            os.replace(staging, kept)
            run_files.fsync_folder(parent)
            raise UserError(f"{folder!r} gained files of yours while this job ran "
                            f"({', '.join(foreign[:4])}), so it was left as it was; the new "
                            f"{kind} folder is {kept!r}")
        os.replace(folder, old)
    os.replace(staging, folder)
    run_files.fsync_folder(parent)
    shutil.rmtree(old, ignore_errors=True)


class FolderLock:
    """An exclusive lock on `folder` (its `.lock` file), for one writer at a time; with
    `shared`, a reader's lock, held beside other readers' but never beside a writer's.

    The holder's pid, host and start time are written into the lock file, so a second
    writer is told who holds it. The operating system releases the lock when the holder's
    process ends, however it ends. A reader locks a lock file it may not write read-only,
    and a folder whose lock file it cannot make not at all: no writer has ever made one.

    Raises:
        UserError: another process holds the lock.
    """

    def __init__(self, folder, what="run folder",
                 advice="wait for it to finish, or choose another --output_dir", shared=False):
        import fcntl

        self.path, self._file = os.path.join(folder, LOCK), None
        cannot = (f"cannot lock the {what} {folder!r}: {self.path!r} is not a plain file this "
                  "project can write")
        try:  # Never through a link: the lock file is rewritten.
            fd, mode = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644), "r+"
        except OSError as error:
            if not (shared and error.errno in (errno.EACCES, errno.EPERM, errno.EROFS)):
                raise UserError(f"{cannot} ({error.strerror})") from None
            try:
                fd, mode = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW), "r"
            except FileNotFoundError:
                return
            except OSError as error:
                raise UserError(f"{cannot} ({error.strerror})") from None
        self._file = os.fdopen(fd, mode, encoding="utf-8")
        try:
            fcntl.flock(self._file, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise UserError(f"the {what} {folder!r} is in use by {holder}; {advice}") from None
        if mode == "r+":
            self._file.seek(0)
            self._file.truncate()
            self._file.write(f"process {os.getpid()} on {socket.gethostname()} since "
                             f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
            self._file.flush()

    def release(self):
        if self._file is not None and not self._file.closed:
            self._file.close()  # Closing the file releases the lock.
