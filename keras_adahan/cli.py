"""What every command line tool of the project shares: quiet start-up and `--debug`.

TensorFlow's C++ runtime prints start-up lines (`I0000 ... oneDNN custom operations are on`,
`E0000 ... oneDNN supports DT_INT32 only ...`) that read as errors to a user, and TFDS logs
absl warnings about folders it probes. The tools stay quiet unless `--debug` is given or the
user set `TF_CPP_MIN_LOG_LEVEL` themselves.
"""

import contextlib
import os
import sys

DEBUG_FLAG = "--debug"
DEBUG_HELP = "show TensorFlow's own log lines and full tracebacks"


def quiet_tensorflow(argv=None):
    """Silences TensorFlow's C++ and absl logging unless `--debug` is in `argv`.

    Runs from `keras_adahan/__init__.py` when Python starts `python -m keras_adahan.X`,
    before TensorFlow is imported: the C++ log level is read at import.
    """
    argv = sys.argv[1:] if argv is None else argv
    if DEBUG_FLAG in argv or "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    # The oneDNN notice is written before absl reads any level: only closing the stream
    # while TensorFlow loads hides it.
    with _stderr_to_devnull():
        import tensorflow  # noqa: F401
    from absl import logging

    logging.set_verbosity(logging.ERROR)


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
