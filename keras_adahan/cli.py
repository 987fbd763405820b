"""What every command line tool of the project shares: quiet start-up, `--debug`, and
expected failures as one line on stderr with exit status 2 (`UserError`, `run`).

TensorFlow's C++ runtime prints start-up lines (`I0000 ... oneDNN custom operations are on`,
`E0000 ... oneDNN supports DT_INT32 only ...`) that read as errors to a user, and TFDS logs
absl warnings about folders it probes. The tools stay quiet unless `--debug` is given; a
`TF_CPP_MIN_LOG_LEVEL` already set (by the user, or inherited from a Python process that
imported TensorFlow, which sets it) chooses the C++ lines after start-up (0 shows the
start-up lines too).
"""

import argparse
import contextlib
import math
import os
import re
import sys
import tempfile
import traceback
import warnings

DEBUG_FLAG = "--debug"
_QUIET = False  # Set by `quiet_tensorflow`: a command line tool without --debug.
DEBUG_HELP = "show TensorFlow's own log lines and full tracebacks"


def quiet_tensorflow():
    """Silences TensorFlow's C++, Python and absl logging unless `--debug` is given; a
    `TF_CPP_MIN_LOG_LEVEL` already set is left to choose the C++ lines after start-up (0:
    the start-up lines too).

    Runs from `keras_adahan/__init__.py` when Python starts `python -m keras_adahan.X`,
    before TensorFlow is imported: the C++ log level is read at import.
    """
    global _QUIET
    if DEBUG_FLAG in sys.argv[1:] or "tensorflow" in sys.modules:
        return
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        _QUIET = True
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    # The oneDNN notice (CPUs where oneDNN is on: AVX-512 VNNI, AMX) is written before absl
    # reads any level, so TF_CPP_MIN_LOG_LEVEL does not hide it: only holding the stream
    # back while TensorFlow loads does. A level of 0 asks for every line.
    with (contextlib.nullcontext() if os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
          else _start_up_lines_hidden()):
        import tensorflow
    from absl import logging

    logging.set_verbosity(logging.ERROR)
    tensorflow.get_logger().setLevel("ERROR")  # Its deprecation notices, too.


@contextlib.contextmanager
def quiet_native_output():
    """Hides what TensorFlow's converter and LiteRT print from C++ (`fully_quantize: 0 ...`,
    `INFO: Created TensorFlow Lite XNNPACK delegate`) while the tools are quiet; exceptions
    still carry their messages."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "3" and _QUIET:
        with _stderr_to_devnull():
            yield
    else:
        yield


# TensorFlow's start-up lines: absl's header, its C++ log lines (`I0000 00:00:17...  123
# port.cc:153] oneDNN custom operations are on ...`) and the CPU notice's second line.
_START_UP_LINE = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\)"
                            r"|[IWE]\d{4} [\d:.]+ +\d+ [^\s\]]+:\d+\] "
                            r"|To enable the following instructions: ")


@contextlib.contextmanager
def _start_up_lines_hidden():
    """Holds back what is written to stderr (by C++ too) and writes it out afterwards but
    for TensorFlow's start-up lines: a warning or an explanation printed while it loads
    (NumPy's of a build mismatch) still reaches the user."""
    try:
        held = tempfile.TemporaryFile()
    except OSError:  # No writable temporary folder: nothing kept, as before.
        with _stderr_to_devnull():
            yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with held:
        try:
            os.dup2(held.fileno(), 2)
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode("utf-8", "replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not _START_UP_LINE.match(line)))
            sys.stderr.flush()


@contextlib.contextmanager
def _stderr_to_devnull():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class UserError(SystemExit):
    """An expected failure (a bad input, a folder in use, a file that does not fit): the
    command prints its message as one line and exits with status 2.

    A `SystemExit`, so a library caller sees an exception carrying the message, and a
    command line without `cli.run` still exits without a traceback.
    """

    def __init__(self, message):
        super().__init__(2)
        self.message = message

    def __str__(self):
        return self.message


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's error format: one line, `error: ...`, exit status 2."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument(DEBUG_FLAG, action="store_true", help=DEBUG_HELP)

    def error(self, message):
        raise UserError(f"{self.prog}: {message} (see --help)")


def run(main, argv=None):
    """Runs a command's `main(argv)`: a `UserError` (or a file or value error raised for an
    input) becomes `error: MESSAGE` on stderr and exit status 2; with `--debug`, the
    traceback too."""
    args = sys.argv[1:] if argv is None else argv
    # Warnings meant for the user (unknown words, an animated image) as one plain line.
    warnings.formatwarning = lambda message, *_, **__: f"warning: {message}\n"
    try:
        return main(argv)
    except KeyboardInterrupt:
        # Every file is written aside and renamed, so an interrupted command leaves none
        # half-written; a trainer continues with --resume.
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except (UserError, OSError, ValueError) as error:
        _fail(error, DEBUG_FLAG in args)
    except Exception as error:
        # TensorFlow's errors (a shard whose checksum fails, a file that vanished while
        # read) come from deep inside; their first line names the file.
        if "tensorflow" not in type(error).__module__:
            raise
        _fail(error, DEBUG_FLAG in args)


def _fail(error, debug):
    if debug:
        traceback.print_exc()
    lines = (str(error) or type(error).__name__).strip().splitlines()
    more = "" if len(lines) == 1 or debug else " (--debug shows more)"
    print(f"error: {lines[0]}{more}", file=sys.stderr)
    sys.exit(2)


class Distinct(argparse.Action):
    """An nargs="+" flag whose values must differ (`--seeds 0 0` would print one run's
    figures as the spread of two)."""

    def __call__(self, parser, namespace, values, option_string=None):
        twice = sorted({str(v) for v in values if values.count(v) > 1})
        if twice:
            parser.error(f"argument {option_string}: {', '.join(twice)} given more than once")
        setattr(namespace, self.dest, values)


def _whole_number(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, received {text!r}") from None


def positive_int(text):
    """argparse type: an int >= 1 (epochs, batch sizes)."""
    if _whole_number(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return int(text)


def seed(text):
    """argparse type: a random seed, an int in [0, 2**32) as NumPy takes."""
    if not 0 <= _whole_number(text) < 2**32:
        raise argparse.ArgumentTypeError(f"expected a seed in [0, 2**32), received {text!r}")
    return int(text)


def folder_path(text):
    """argparse type: a folder path (`~` expanded, as the shell leaves it in --flag=~/x);
    an empty string or an existing file is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder path, received an empty string")
    path = os.path.expanduser(text)
    if os.path.exists(path) and not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path!r} is a file, not a folder")
    return path


def file_path(text):
    """argparse type: a file path (`~` expanded); an empty string is refused (it read as
    "not given": `--overlay ""` wrote nothing without a word)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a file path, received an empty string")
    return os.path.expanduser(text)


def run_path(text):
    """argparse type: a run folder or its `model.keras` (`~` expanded); an empty string is
    refused (`run_files.load_run` names what else is wrong)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a run folder or its model.keras, received "
                                         "an empty string")
    return os.path.expanduser(text)


def dataset_name(text):
    """argparse type: a registered dataset name or folder:PATH."""
    from keras_adahan.datasets import registry

    try:
        return registry.get_dataset(text).name
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def finite_float(text):
    """argparse type: a finite float (`inf` and `nan` are refused, naming the value)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, received {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, received {text!r}")
    return value
