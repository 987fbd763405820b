"""Runs an exported VQA .tflite with LiteRT (`ai_edge_litert`), in any quantization.

Example:

```python
from keras_adahan.export.litert_vqa import LiteRTVQA

vqa = LiteRTVQA("artifacts/classic/vqa_int8.tflite")
out = vqa.predict(image, question_ids)          # one call: image (S, S, 3) 0..255, ids (L,)
cells = vqa.encode(image)                       # encode once ...
out = vqa.answer(cells, other_question_ids)     # ... ask many: head only
out["probabilities"], out["mask"], out["presence"]   # (A,), (N,), (N,) float32
```
"""

import hashlib
import warnings

import numpy as np

from keras_adahan import cli

SIGNATURES = ("vqa", "encode", "answer")


def quantize(values, details):
    """Float values -> the integer type of a quantized input tensor (its scale, zero point)."""
    dtype = details["dtype"]
    scale, zero_point = details["quantization"]
    if not np.issubdtype(dtype, np.integer) or scale == 0:
        return np.asarray(values, dtype=dtype)  # Not quantized (e.g. int32 token ids).
    info = np.iinfo(dtype)
    quantized = np.round(np.asarray(values, np.float32) / scale) + zero_point
    return np.clip(quantized, info.min, info.max).astype(dtype)


def dequantize(values, details):
    """A quantized output tensor -> float32 values; float outputs pass through."""
    scale, zero_point = details["quantization"]
    if np.issubdtype(values.dtype, np.integer) and scale != 0:
        return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return values.astype(np.float32, copy=False)


def _check_image(image):
    """Pixel values 0..255 (`keras_adahan.preprocessing.load_image`): anything else is
    answered, and wrongly (the int8 file clips it to its 0..255 input range)."""
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise ValueError(f"`image` must hold pixel values 0..255, received {image.dtype}")
    if not np.isfinite(image).all():
        raise ValueError("`image` holds NaN or infinite values; expected pixel values 0..255")
    low, high = image.min(), image.max()  # Its shape is checked: never empty.
    if low < -0.5 or high > 255.5:  # Past a half grey level of rounding.
        raise ValueError(f"`image` must hold pixel values 0..255 "
                         "(keras_adahan.preprocessing.load_image), received values from "
                         f"{low:g} to {high:g}")
    if np.issubdtype(image.dtype, np.floating) and 0 < high <= 1.0:
        warnings.warn("`image` holds values in 0..1; the model reads pixel values 0..255 "
                      "(keras_adahan.preprocessing.load_image): multiply it by 255",
                      stacklevel=5)


def _check_question(question):
    """Left-padded token ids (`keras_adahan.text.Vocabulary.encode`), at least one word."""
    if not (np.issubdtype(question.dtype, np.integer) and question.min(initial=0) >= 0
            and question.max(initial=0) <= np.iinfo(np.int32).max):
        raise ValueError("`question` must hold token ids, integers >= 0 (see "
                         "keras_adahan.text.Vocabulary.encode), received "
                         f"{question.dtype} {question.ravel()[:8].tolist()}")
    rows = question.reshape(-1, question.shape[-1])
    if not rows.any(axis=1).all():
        raise ValueError("`question` holds no word, only padding (0)")
    if ((rows[:, :-1] != 0) & (rows[:, 1:] == 0)).any():  # The RNN would read the pads last.
        raise ValueError("`question` must be left-padded (padding, 0, before the words), "
                         f"received {rows[0].tolist()}")


class LiteRTVQA:
    """A VQA .tflite file with its `vqa`, `encode` and `answer` signatures.

    Quantized inputs are quantized and quantized outputs dequantized with each tensor's
    scale and zero point, so float32, float16, dynamic-range and int8 files are called the
    same way: images as float pixel values 0..255, questions as int32 token ids.

    Args:
        model: str or bytes. Path of the .tflite file, or its content.
        num_threads: int. CPU threads of the interpreter. Defaults to 1.
        xnnpack: bool. Use the XNNPACK delegate (LiteRT's default CPU path); `False` runs
            the builtin kernels only. Defaults to `True`.
    """

    def __init__(self, model, num_threads=1, xnnpack=True):
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_litert.interpreter import OpResolverType

        resolver = (OpResolverType.AUTO if xnnpack
                    else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        where = "the model content"
        if not isinstance(model, (bytes, bytearray)):
            where = repr(model)
            with open(model, "rb") as f:
                model = f.read()
        self.sha256 = hashlib.sha256(model).hexdigest()  # Names the file: see labels.json.
        self._content = bytes(model)  # The interpreter reads it for its whole life.
        try:
            with cli.quiet_native_output():  # LiteRT's "INFO: Created ... delegate" line.
                self.interpreter = Interpreter(model_content=self._content,
                                               num_threads=num_threads,
                                               experimental_op_resolver_type=resolver)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise ValueError(f"{where} is not a readable .tflite model ({error})") from None
        available = self.interpreter.get_signature_list()
        missing = [key for key in SIGNATURES if key not in available]
        if missing:
            raise ValueError(
                f"the .tflite file has no {', '.join(missing)} signature(s) (it has "
                f"{', '.join(available) or 'none'}); export it with `python -m "
                "keras_adahan.export`"
            )
        self.runners = {key: self.interpreter.get_signature_runner(key) for key in SIGNATURES}
        self.inputs = {key: r.get_input_details() for key, r in self.runners.items()}
        self.outputs = {key: r.get_output_details() for key, r in self.runners.items()}
        image = self.inputs["vqa"]["image"]["shape"]  # (1, S, S, 3)
        self.image_size = int(image[1])
        self.max_question_length = int(self.inputs["vqa"]["question"]["shape"][1])
        self.num_cells = int(self.outputs["vqa"]["mask"]["shape"][-1])
        self.grid_size = int(self.inputs["answer"]["cells"]["shape"][1])  # (1, G, G, C)

    def _feed(self, signature, **values):
        feed = {}
        for name, value in values.items():
            details = self.inputs[signature][name]
            value = np.asarray(value)
            if value.ndim == len(details["shape"]) - 1:
                value = value[None]  # Add the batch axis.
            expected = tuple(int(n) for n in details["shape"])
            if value.shape != expected:  # LiteRT would fail deep in a delegate's reshape.
                raise ValueError(f"`{name}` must have shape {expected[1:]} (or {expected}), "
                                 f"received {value.shape}")
            if name == "image":
                _check_image(value)
            if name == "question":
                _check_question(value)
            if (name == "cells" and np.issubdtype(value.dtype, np.integer)
                    and not np.issubdtype(details["dtype"], np.integer)):
                raise ValueError(f"`cells` are {value.dtype}, as a quantized file's `encode` "
                                 "returns them; this file's `answer` reads float cells: "
                                 "pass what its own `encode` returns")
            if value.dtype != details["dtype"]:
                value = quantize(value, details)
            feed[name] = value
        return feed

    def _run(self, signature, **values):
        try:
            raw = self.runners[signature](**self._feed(signature, **values))
        except RuntimeError as error:
            if "gather index out of bounds" not in str(error):
                raise
            raise ValueError("`question` holds a token id beyond this model's vocabulary "
                             "(keras_adahan.text.Vocabulary.encode of the words in "
                             "labels.json gives only ids the model knows)") from None
        return {name: dequantize(value, self.outputs[signature][name])[0]
                for name, value in raw.items()}

    def predict(self, image, question):
        """One call. Returns `{"probabilities": (A,), "mask": (N,), "presence": (N,)}`."""
        return self._run("vqa", image=image, question=question)

    def encode(self, image):
        """Encodes an image once: its cells, already in the `answer` signature's input type."""
        (name, cells), = self.runners["encode"](**self._feed("encode", image=image)).items()
        cells = dequantize(cells, self.outputs["encode"][name])
        return quantize(cells, self.inputs["answer"]["cells"])

    def answer(self, cells, question):
        """A further question on encoded cells: runs the question branch and the head only."""
        return self._run("answer", cells=cells, question=question)
