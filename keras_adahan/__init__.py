"""keras-adahan: HAN and AdaHAN hard-attention VQA (Malinowski et al., ECCV 2018) in Keras 3.

Main entry points:
- `VQAModel(config)` / `build_model(config)`: the functional VQA model (inputs `image`,
  `question`; outputs `answer` logits, `presence`, `mask`), carrying its `ModelConfig`;
  `get_preset("default" | "reference")` gives a config.
- `python -m keras_adahan.train` / `.evaluate` / `.export` / `.predict`.
"""

__version__ = "0.1.0"

import os
import sys


def _started_as_a_tool():
    """`python -m keras_adahan.COMMAND` (sys.argv[0] is "-m" while Python locates the
    module) or a script of the repository's benchmarks/ (`python benchmarks/X.py`)."""
    first = sys.argv[0] if sys.argv else ""
    folder = os.path.basename(os.path.dirname(os.path.abspath(first)))
    return first == "-m" or (first.endswith(".py") and folder == "benchmarks")


if _started_as_a_tool():
    # Silence TensorFlow's start-up lines before anything imports it.
    from keras_adahan import cli

    cli.quiet_tensorflow()

from keras_adahan import layers  # noqa: F401  (registers the layers for load_model)
from keras_adahan.config import ModelConfig  # noqa: F401
from keras_adahan.geometry import cell_boxes  # noqa: F401
from keras_adahan.geometry import cell_edges  # noqa: F401
from keras_adahan.geometry import grid_size  # noqa: F401
from keras_adahan.model import VQAModel  # noqa: F401  (registers it for load_model)
from keras_adahan.model import build_model  # noqa: F401
from keras_adahan.model import build_training_model  # noqa: F401
from keras_adahan.presets import PRESETS  # noqa: F401
from keras_adahan.presets import get_preset  # noqa: F401
