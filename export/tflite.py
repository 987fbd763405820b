"""SavedModel -> .tflite with TFLite builtin ops only, in four quantizations.

    float32        the reference: same numbers as Keras up to float rounding
    float16        weights stored as float16, computed in float32 (half the size)
    dynamic_range  weights int8, activations quantized on the fly; convs over at most 8
                   input channels keep float weights (faster, docs/export.md)
    int8           full-integer: weights and activations int8, calibrated on
                   representative inputs; the image input is int8 too; the image
                   encoder's blocks whose conv reads at most 8 channels compute in
                   float (`float_layers_in_int8`)

Every conversion restricts `target_spec.supported_ops` to TFLite builtins (plus their int8
versions for `int8`): the converter's default would let a TensorFlow op slip in as a Flex op,
which needs the large Flex delegate on the device. A model needing one fails here with
`ExportError` naming the op, and every written file is checked again by `check_builtin_ops`.
"""

import re
import warnings

from keras_adahan import cli

from . import tflite_edits

QUANTIZATIONS = ("float32", "float16", "dynamic_range", "int8")


class ExportError(Exception):
    """An export step failed for a reason the user can act on; the message says which."""


def convert(saved_model_dir, signature_keys, quantization="float32", representative_dataset=None,
            float_layers=None):
    """Converts signatures of a SavedModel to a .tflite flatbuffer (bytes).

    Args:
        saved_model_dir: str. A SavedModel with static input shapes.
        signature_keys: list of str. The signatures to convert; each becomes a signature
            of the .tflite file.
        quantization: str. One of `QUANTIZATIONS`. Defaults to `"float32"`.
        representative_dataset: callable returning an iterator of
            `(signature_key, {input_name: array})`; required for `"int8"`.
        float_layers: tuple of str. Keras layer names whose ops stay float in the int8
            model (`float_layers_in_int8` gives the export's). `None`:
            `FLOAT_LAYERS_IN_INT8`. Defaults to `None`.

    Raises:
        ExportError: the model needs an op TFLite has no builtin for (named), or the
            converter failed.
    """
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"`quantization` must be one of {QUANTIZATIONS}, received {quantization!r}"
        )
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=list(signature_keys)
    )
    # Builtins only: no Flex (SELECT_TF_OPS), no custom ops.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic_range":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8":
        if representative_dataset is None:
            raise ValueError("`representative_dataset` is required for int8 quantization")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        # INT8 builtins where an op has them; the rest (e.g. TOPK_V2 on float presence)
        # stay float builtins behind a DEQUANTIZE, still no Flex.
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS,
        ]
        # Calibrate only; quantized below with ops kept float (see _quantize).
        converter._experimental_calibrate_only = True
    try:
        with warnings.catch_warnings(), cli.quiet_native_output():
            # The calibrator runs tf.lite.Interpreter, which warns it is deprecated.
            warnings.simplefilter("ignore")
            flatbuffer = converter.convert()
            if quantization == "int8":
                flatbuffer = _quantize(flatbuffer, FLOAT_LAYERS_IN_INT8 if float_layers is None
                                       else float_layers)
    except Exception as error:  # ConverterError and friends, from deep inside TF.
        raise ExportError(_conversion_message(error, quantization)) from None
    if quantization == "dynamic_range":
        flatbuffer = tflite_edits.float_weights_for_narrow_convs(flatbuffer)
    check_builtin_ops(flatbuffer, what=f"the {quantization} model")
    return tflite_edits.strip_tensor_names(flatbuffer)


# Ops left float in the int8 model; what each cost in int8 is measured in docs/export.md
# ("int8: ops kept float").
# - ONE_HOT: the quantizer gives its output a scale that its 1/0 values do not get, so the
#   HAN/AdaHAN mask (a sum of one-hot rows) holds ~0.5 where it should be 0.
# - SQUARE, SUM, MAXIMUM, SQRT: the presence (L2 norm per cell) and the sums over cells: one
#   coarse int8 scale makes near-equal presences tie, and top-k keeps other cells. They
#   touch N x D values, a few microseconds.
FLOAT_OPS_IN_INT8 = ("ONE_HOT", "SQUARE", "SUM", "MAXIMUM", "SQRT")
# Keras layers left float: "aggregate_norm", the LayerNorm on the sum over kept cells, whose
# direction carries the counts of barn_vqa/randomized; it is one 64-vector.
FLOAT_LAYERS_IN_INT8 = ("aggregate_norm",)


def float_layers_in_int8(model):
    """The layers whose ops the export keeps float in the int8 model.

    `FLOAT_LAYERS_IN_INT8`, plus every block of the image encoder (conv, its batch norm,
    pooling and ReLU; the first also takes the rescaling) whose conv reads at most
    `tflite_edits.NARROW_CONV_CHANNELS` channels: XNNPACK's int8 conv over the 3 RGB
    channels is slower than its float32 conv on CPUs with AVX-512, and over 8 channels no
    faster (docs/export.md, "int8: every narrow conv in float"). The same convs
    keep float weights in the dynamic-range file. A float block's output is quantized once,
    and the wider convs after it run in int8.
    """
    import keras

    from keras_adahan.layers import ConvAveragePool2D

    names, block, narrow = [], [], False
    for layer in model.get_layer("image_encoder").layers[1:]:  # [0]: the Input.
        block.append(layer.name)
        if isinstance(layer, (keras.layers.Conv2D, ConvAveragePool2D)):
            narrow = layer.input.shape[-1] <= tflite_edits.NARROW_CONV_CHANNELS
        if layer.name.startswith("relu_"):
            names += block if narrow else []
            block, narrow = [], False
    return tuple(FLOAT_LAYERS_IN_INT8) + tuple(names)


def _quantize(calibrated, float_layers):
    """Full-integer quantization of a calibrated model; `FLOAT_OPS_IN_INT8` and the ops of
    `float_layers` kept float.

    What `converter.convert()` does after calibration, plus the op and node denylists that
    `tf.lite.experimental.QuantizationDebugger` uses for selective quantization (which
    handles neither several signatures nor an int8 input type).
    """
    import tensorflow as tf
    from tensorflow.lite.python import convert as tflite_convert

    # Nodes are named by their tensors, e.g. `han_vqa_1/answer_head_1/aggregate_norm_1/add`.
    in_float_layer = re.compile(
        "(^|/)(" + "|".join(re.escape(name) for name in float_layers) + r")(_\d+)?/"
    )
    nodes = sorted({tensor.name.decode()
                    for subgraph in tflite_edits.read(calibrated).subgraphs
                    for tensor in subgraph.tensors
                    if tensor.name and in_float_layer.search(tensor.name.decode())})
    return tflite_convert.mlir_quantize(
        calibrated,
        # Float inputs become int8 (the image: scale 1, zero point -128 when calibrated on
        # 0..255 pixels, so whole pixel values pass exactly); outputs stay float32.
        input_data_type=tf.int8,
        output_data_type=tf.float32,
        denylisted_ops=list(FLOAT_OPS_IN_INT8),
        denylisted_nodes=nodes,
        # One scale per weight tensor rather than one per output channel: a channel's
        # scale and zero point take 12 bytes in every signature using it (docs/export.md).
        disable_per_channel=True,
    )


def _conversion_message(error, quantization):
    """A short message for a failed conversion, naming the ops TFLite builtins lack."""
    text = str(error)
    flex_ops, custom_ops = set(), set()
    for item in getattr(error, "errors", None) or ():
        code = _error_code_name(item)
        name = item.operator.name if item.HasField("operator") else ""
        name = name[3:] if name.startswith("tf.") else name
        if name and code == "ERROR_NEEDS_FLEX_OPS":
            flex_ops.add(name)
        elif name and code == "ERROR_NEEDS_CUSTOM_OPS":
            custom_ops.add(name)
    for label, found in (("TF Select ops", flex_ops), ("Custom ops", custom_ops)):
        match = re.search(rf"{label}: ([^\n]*)", text)
        if match:
            found.update(op.strip() for op in match.group(1).split(",") if op.strip())
    if flex_ops or custom_ops:
        ops = ", ".join(sorted(flex_ops | custom_ops))
        return (
            f"the model uses TensorFlow op(s) {ops} that have no TFLite builtin: converting "
            f"them would need a Flex (SELECT_TF_OPS) or custom op, which this export does not "
            f"allow. Rewrite the layer with ops TFLite has builtins for ({quantization} "
            "conversion)."
        )
    first_lines = "\n".join(text.strip().splitlines()[:5])
    return f"the TFLite converter failed ({quantization}): {first_lines}"


def _error_code_name(item):
    try:
        return item.ErrorCode.Name(item.error_code)
    except (AttributeError, ValueError):
        return ""


def op_names(flatbuffer):
    """The operator names a .tflite flatbuffer uses, per signature, and for custom ops.

    Returns:
        `(ops, custom)`: `ops` maps each signature key (or `"subgraph_I"` for a subgraph
        that no signature reaches) to the sorted list of its builtin op names plus custom
        op names, counting the subgraphs its WHILE and IF ops run; `custom` is the sorted
        list of custom (incl. Flex) op names anywhere in the file.
    """
    model = tflite_edits.read(flatbuffer)
    codes = tflite_edits.opcode_names(model)
    custom = {name for name, code in zip(codes, model.operatorCodes or ()) if code.customCode}

    def names_in(subgraphs):
        return sorted({codes[operator.opcodeIndex] for index in subgraphs
                       for operator in model.subgraphs[index].operators or ()})

    roots = [(s.signatureKey.decode(), s.subgraphIndex) for s in model.signatureDefs or ()]
    roots += [(f"subgraph_{index}", index) for index in range(len(model.subgraphs))]
    ops, reached = {}, set()
    for key, index in roots:
        if key.startswith("subgraph_") and index in reached:
            continue
        subgraphs = tflite_edits.called_subgraphs(model, index)
        reached |= subgraphs
        ops[key] = names_in(subgraphs)
    return ops, sorted(custom)


def check_builtin_ops(flatbuffer, what="the model"):
    """Raises `ExportError` naming any Flex or custom op in a .tflite flatbuffer."""
    _, custom = op_names(flatbuffer)
    if custom:
        flex = [name for name in custom if name.startswith("Flex")]
        kind = "Flex (TensorFlow) op(s)" if flex else "custom op(s)"
        raise ExportError(
            f"{what} uses {kind} {', '.join(custom)}: only TFLite builtin ops are allowed, "
            "so the model runs on the plain LiteRT runtime without the Flex delegate"
        )
