"""keras-adahan: HAN and AdaHAN hard-attention VQA (Malinowski et al., ECCV 2018) in Keras 3.

Main entry points:
- `build_model(config)`: the functional VQA model (inputs `image`, `question`; outputs
  `answer` logits, `presence`, `mask`), `get_preset("default" | "reference")` its config.
- `python -m keras_adahan.train` / `.evaluate` / `.export` / `.predict`.
"""

__version__ = "0.1.0"

from keras_adahan import layers  # noqa: F401  (registers the layers for load_model)
from keras_adahan.model import ModelConfig  # noqa: F401
from keras_adahan.model import build_model  # noqa: F401
from keras_adahan.model import build_training_model  # noqa: F401
from keras_adahan.model import cell_boxes  # noqa: F401
from keras_adahan.model import grid_size  # noqa: F401
from keras_adahan.presets import PRESETS  # noqa: F401
from keras_adahan.presets import get_preset  # noqa: F401
