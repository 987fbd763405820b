"""Edits of a converted .tflite flatbuffer that the TFLite converter has no option for.

- `strip_tensor_names`: drop the debug names of tensors (signatures kept).
- `vqa_calls_encode_and_answer`: make the one-call `vqa` signature run the `encode` and
  `answer` subgraphs (two TFLite `IF` ops on a constant true) instead of its own copy of
  both, so the file holds the graph once and `vqa` answers exactly as `encode` + `answer`.

Both read the file with the flatbuffer object API and write it back with every weight
buffer at a 16-byte boundary, as the converter does.
"""

import copy

import numpy as np

# Options fields that name a subgraph to run (WHILE, IF).
_SUBGRAPH_FIELDS = ("condSubgraphIndex", "bodySubgraphIndex", "thenSubgraphIndex",
                    "elseSubgraphIndex")


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def read(flatbuffer):
    """The `ModelT` (object API) of a .tflite flatbuffer."""
    schema = _schema()
    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))


def write(model):
    """A `ModelT` back to .tflite bytes, weight buffers 16-byte aligned."""
    import flatbuffers

    buffers = model.buffers
    model.buffers = [_AlignedBuffer(buffer) for buffer in buffers]
    try:
        builder = flatbuffers.Builder(1 << 16)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    finally:
        model.buffers = buffers
    return bytes(builder.Output())


class _AlignedBuffer:
    """Packs a weight buffer at a 16-byte boundary (the generated `BufferT.Pack` aligns
    to 1 byte), so kernels can read weights in place."""

    def __init__(self, buffer):
        self.buffer = buffer

    def Pack(self, builder):  # noqa: N802 (the object API's name)
        schema = _schema()
        offset = None
        if self.buffer.data is not None and len(self.buffer.data):
            payload = bytes(bytearray(self.buffer.data))
            builder.Prep(16, len(payload))  # After the payload, the position is 16-aligned.
            offset = builder.CreateByteVector(payload)
        schema.BufferStart(builder)
        if offset is not None:
            schema.BufferAddData(builder, offset)
        schema.BufferAddOffset(builder, self.buffer.offset)
        schema.BufferAddSize(builder, self.buffer.size)
        return schema.BufferEnd(builder)


def strip_tensor_names(flatbuffer):
    """The .tflite flatbuffer without its tensor names; signatures and all else kept.

    Tensor names are debug strings (`han_vqa_1/answer_head_1/fusion_1_1/convolution`,
    ...): nothing at run time reads them, signatures map their input and output names to
    tensor indices (docs/export.md, "Smaller files"). TFLite's own
    `flatbuffer_utils.strip_strings` also drops the signatures, which apps call by name.
    """
    model = read(flatbuffer)
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            tensor.name = None
    return write(model)


def called_subgraphs(model, index):
    """Subgraph `index` and every subgraph its WHILE / IF ops run, transitively."""
    found, pending = set(), [index]
    while pending:
        current = pending.pop()
        if current not in found:
            found.add(current)
            for operator in model.subgraphs[current].operators or ():
                options = operator.builtinOptions
                pending += [getattr(options, field) for field in _SUBGRAPH_FIELDS
                            if hasattr(options, field)]
    return found


def vqa_calls_encode_and_answer(flatbuffer):
    """Rewires the `vqa` signature to run the `encode` and `answer` subgraphs.

    The converter gives each signature its own subgraph, so `vqa` repeated the whole
    graph of `encode` and `answer` (docs/export.md, "Smaller files") and, in int8, had its own
    calibration: its answers could differ from `encode` + `answer`'s. The new `vqa`
    subgraph is `IF(true, image) -> cells` running `encode`, a QUANTIZE when `answer`
    takes int8 cells, and `IF(true, cells, question)` running `answer`.
    """
    schema = _schema()
    model = read(flatbuffer)
    signatures = {s.signatureKey.decode(): s for s in model.signatureDefs}
    encode, answer, vqa = (signatures[key] for key in ("encode", "answer", "vqa"))
    encode_graph = model.subgraphs[encode.subgraphIndex]
    answer_graph = model.subgraphs[answer.subgraphIndex]
    old_vqa = (called_subgraphs(model, vqa.subgraphIndex)
               - called_subgraphs(model, encode.subgraphIndex)
               - called_subgraphs(model, answer.subgraphIndex))

    def index_of(signature, kind, name):
        (index,) = [m.tensorIndex for m in getattr(signature, kind) if m.name.decode() == name]
        return index

    graph = schema.SubGraphT()
    graph.name, graph.tensors, graph.operators = b"vqa", [], []

    def add_tensor(tensor):
        graph.tensors.append(tensor)
        return len(graph.tensors) - 1

    def like(tensor):  # A non-constant tensor of the same shape, type and quantization.
        tensor = copy.deepcopy(tensor)
        tensor.buffer = 0
        return add_tensor(tensor)

    def add_operator(builtin, inputs, outputs, run_subgraph=None):
        operator = schema.OperatorT()
        operator.opcodeIndex = _opcode_index(model, builtin)
        operator.inputs, operator.outputs = list(inputs), list(outputs)
        if run_subgraph is not None:
            options = schema.IfOptionsT()
            options.thenSubgraphIndex = options.elseSubgraphIndex = run_subgraph
            operator.builtinOptionsType = schema.BuiltinOptions.IfOptions
            operator.builtinOptions = options
        graph.operators.append(operator)

    true = schema.BufferT()
    true.data = np.array([1], np.uint8)
    model.buffers.append(true)
    condition = schema.TensorT()
    condition.shape, condition.type = np.zeros(0, np.int32), schema.TensorType.BOOL
    condition.buffer = len(model.buffers) - 1
    condition = add_tensor(condition)

    image = like(encode_graph.tensors[index_of(encode, "inputs", "image")])
    encoded = encode_graph.tensors[index_of(encode, "outputs", "cells")]
    cells = like(encoded)
    add_operator(schema.BuiltinOperator.IF, [condition, image], [cells],
                 run_subgraph=encode.subgraphIndex)
    answer_cells = answer_graph.tensors[index_of(answer, "inputs", "cells")]
    if not _same_encoding(encoded, answer_cells):  # int8 `answer` takes int8 cells.
        quantized = like(answer_cells)
        add_operator(schema.BuiltinOperator.QUANTIZE, [cells], [quantized])
        cells = quantized
    question = like(answer_graph.tensors[index_of(answer, "inputs", "question")])
    feed = {index_of(answer, "inputs", "cells"): cells,
            index_of(answer, "inputs", "question"): question}
    outputs = {index: like(answer_graph.tensors[index]) for index in answer_graph.outputs}
    add_operator(schema.BuiltinOperator.IF,
                 [condition] + [feed[index] for index in answer_graph.inputs],
                 list(outputs.values()), run_subgraph=answer.subgraphIndex)
    graph.inputs, graph.outputs = [image, question], list(outputs.values())
    for item in vqa.inputs:
        item.tensorIndex = {"image": image, "question": question}[item.name.decode()]
    for item in vqa.outputs:
        item.tensorIndex = outputs[index_of(answer, "outputs", item.name.decode())]

    # The new subgraph in, the old vqa subgraph and its loops out; renumber the rest.
    model.subgraphs.append(graph)
    vqa.subgraphIndex = len(model.subgraphs) - 1
    kept = [i for i in range(len(model.subgraphs)) if i not in old_vqa]
    new_index = {old: new for new, old in enumerate(kept)}
    model.subgraphs = [model.subgraphs[i] for i in kept]
    for subgraph in model.subgraphs:
        for operator in subgraph.operators or ():
            for field in _SUBGRAPH_FIELDS:
                if hasattr(operator.builtinOptions, field):
                    old = getattr(operator.builtinOptions, field)
                    setattr(operator.builtinOptions, field, new_index[old])
    for signature in model.signatureDefs:
        signature.subgraphIndex = new_index[signature.subgraphIndex]
    # Weights only the old vqa subgraph used (none while the converter shares them).
    used = {t.buffer for s in model.subgraphs for t in s.tensors}
    used |= {m.buffer for m in model.metadata or ()}
    for index, buffer in enumerate(model.buffers):
        if index not in used:
            buffer.data = None
    return write(model)


def opcode_names(model):
    """The name of each of a `ModelT`'s operator codes, by index: the builtin's name
    (`CONV_2D`, ...) or a custom op's code (`FlexMatrixDeterminant`, ...)."""
    names = {value: key for key, value in vars(_schema().BuiltinOperator).items()
             if not key.startswith("_")}
    return [code.customCode.decode() if code.customCode
            else names.get(_builtin(code), f"BUILTIN_{_builtin(code)}")
            for code in model.operatorCodes or ()]


def _builtin(code):
    # Codes above 127 live in `builtinCode`; older files only fill the deprecated one.
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _opcode_index(model, builtin):
    """Index of `builtin` in the model's operator codes, added if missing."""
    for index, code in enumerate(model.operatorCodes):
        if not code.customCode and _builtin(code) == builtin:
            return index
    code = _schema().OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _same_encoding(a, b):
    """Whether tensors `a` and `b` hold values the same way: type, scales, zero points."""
    def quantization(tensor):
        q = tensor.quantization
        return tuple(() if q is None or getattr(q, field) is None else
                     tuple(np.asarray(getattr(q, field)).tolist())
                     for field in ("scale", "zeroPoint"))
    return a.type == b.type and quantization(a) == quantization(b)


# Convs over at most this many input channels stay float in the quantized files: int8
# makes them no faster, and over the RGB image slower, on CPUs (docs/export.md). Also
# `tflite.float_layers_in_int8`.
NARROW_CONV_CHANNELS = 8


def float_weights_for_narrow_convs(flatbuffer, max_input_channels=NARROW_CONV_CHANNELS):
    """Gives back float32 weights to the hybrid convs over at most `max_input_channels`
    channels (a dynamic-range file's convs on the RGB image and on few feature maps).

    A dynamic-range file computes a conv with int8 weights on float input by quantizing
    the input on the fly; over few input channels that costs more than the float conv it
    replaces, over many it gains (both measured in docs/export.md). The weights are dequantized with their own scales, so the conv
    computes what the dynamic-range file meant, in float32, and LiteRT runs it as a float
    conv. Other ops are left as they are.
    """
    schema = _schema()
    model = read(flatbuffer)
    codes = opcode_names(model)
    changed, done = False, set()  # Signatures' subgraphs share weight buffers.
    for subgraph in model.subgraphs:
        for operator in subgraph.operators or ():
            if codes[operator.opcodeIndex] != "CONV_2D":
                continue
            data, weights = (subgraph.tensors[i] for i in operator.inputs[:2])
            if (data.type != schema.TensorType.FLOAT32
                    or weights.type != schema.TensorType.INT8
                    or weights.shape[-1] > max_input_channels):
                continue
            if weights.buffer in done:
                weights.type, weights.quantization = schema.TensorType.FLOAT32, None
                continue
            done.add(weights.buffer)
            buffer = model.buffers[weights.buffer]
            values = np.frombuffer(bytes(bytearray(buffer.data)), np.int8).reshape(
                weights.shape).astype(np.float32)
            q = weights.quantization
            scale = np.asarray(q.scale, np.float32)
            zero_point = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0], np.float32)
            shape = [1] * values.ndim
            if scale.size > 1:
                shape[q.quantizedDimension] = scale.size
            values = (values - zero_point.reshape(shape)) * scale.reshape(shape)
            buffer.data = np.frombuffer(values.astype("<f4").tobytes(), np.uint8)
            weights.type, weights.quantization = schema.TensorType.FLOAT32, None
            changed = True
    return write(model) if changed else flatbuffer
