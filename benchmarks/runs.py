"""The table scripts' runs: each trained once into its own folder under --runs_dir, and
reused by the next command with the same settings."""

import os
import subprocess
import sys

from keras_adahan import cli


def train_unless_finished(out, trainer_args, quiet=False):
    """Trains the run folder `out` with `trainer_args` (which name it, with `--resume`),
    unless it finished (`metrics.json`). A folder trained with other settings is refused,
    and a trainer that stops is one line (its own message is above it)."""
    if os.path.exists(os.path.join(out, "config.json")):
        from keras_adahan import train

        differ = train.settings_differences(out, trainer_args)
        if differ:
            raise cli.UserError(f"{out} holds a run trained with other settings: "
                                f"{', '.join(differ)}; pass another --runs_dir")
        if os.path.exists(os.path.join(out, "metrics.json")):
            return
    command = [sys.executable, "-m", "keras_adahan.train", *trainer_args]
    print("$", " ".join(command[1:]), flush=True)
    check(subprocess.run(command, stdout=subprocess.DEVNULL if quiet else None), "trainer", out)


def check(process, what, out):
    """One line, not a traceback, when the trainer or an evaluation of `out` stopped (its
    own message is above)."""
    if process.returncode:
        raise cli.UserError(f"the {what} of {out} stopped with exit status "
                            f"{process.returncode} (its message is above); the runs before "
                            "it are kept, and the same command reuses them")
