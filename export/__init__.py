"""SavedModel and TFLite export, installed as `keras_adahan.export`.

    python -m keras_adahan.export RUN_DIR --output_dir DIR

writes a SavedModel, .tflite files in float32, float16, dynamic-range and int8 (TFLite
builtin ops only), the labels an app needs and a report of sizes, ops and parity (see
`keras_adahan.export.exporter`). `LiteRTVQA` runs an exported .tflite file.

The names below are imported on first use, so `python -m keras_adahan.export` and
`keras_adahan.predict` start without loading TensorFlow before they need it.
"""

import importlib

_NAMES = {  # name: the module of this package that defines it
    "export": "exporter",
    "format_report": "exporter",
    "LiteRTVQA": "litert_vqa",
    "QUANTIZATIONS": "tflite",
    "ExportError": "tflite",
    "check_builtin_ops": "tflite",
    "op_names": "tflite",
}
__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
