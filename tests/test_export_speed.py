"""The export's choices for speed: convs over few channels (the 3 RGB channels, the
reference's 8) stay float in the int8 file and keep float weights in the dynamic-range
file; convs with few filters compute neighbouring outputs together; all compute what they
should."""

import os

import numpy as np
import tensorflow as tf

from keras_adahan import VQAModel
from keras_adahan import get_preset
from keras_adahan.export import exporter
from keras_adahan.export import tflite
from keras_adahan.export import tflite_edits


def _convs(flatbuffer):
    """`(input type, filter type, input channels)` of every CONV_2D, in graph order."""
    model = tflite_edits.read(flatbuffer)
    names = tflite_edits.opcode_names(model)
    found = []
    for subgraph in model.subgraphs:
        for operator in subgraph.operators:
            if names[operator.opcodeIndex] == "CONV_2D":
                data, weights = (subgraph.tensors[i] for i in operator.inputs[:2])
                found.append((data.type, weights.type, int(weights.shape[-1])))
    return found


def test_int8_narrow_convs_are_float_and_the_others_int8(exported_tiny_run):
    from ai_edge_litert import schema_py_generated as schema

    with open(os.path.join(exported_tiny_run["export_dir"], "vqa_int8.tflite"), "rb") as f:
        convs = _convs(f.read())
    float32, int8 = schema.TensorType.FLOAT32, schema.TensorType.INT8
    assert [c for c in convs if c[2] == 3] == [(float32, float32, 3)]  # The RGB conv.
    assert {c[:2] for c in convs if c[2] > 8} == {(int8, int8)}
    assert {c[:2] for c in convs if c[2] <= 8} == {(float32, float32)}
    report = exported_tiny_run["report"]["artifacts"]["vqa_int8.tflite"]
    assert report["float_layers"][:1] == list(tflite.FLOAT_LAYERS_IN_INT8)
    assert {"rescale", "conv_1", "relu_1"} <= set(report["float_layers"])


def test_int8_keeps_every_block_of_the_reference_encoder_float():
    # Its three convs read 3, 8 and 8 channels; the default preset's first reads 3, then 16.
    reference = VQAModel(get_preset("reference"))
    assert set(tflite.float_layers_in_int8(reference)) == {
        "aggregate_norm", "rescale", "conv_pool_1", "relu_1", "conv_pool_2", "relu_2",
        "conv_pool_3", "relu_3"}
    default = VQAModel(get_preset("default"))
    assert set(tflite.float_layers_in_int8(default)) == {
        "aggregate_norm", "rescale", "conv_1", "batch_norm_1", "relu_1"}


def test_folded_reference_encoder_computes_two_outputs_per_conv_in_tflite(tmp_path):
    # Its 8-filter convs run as 16-channel convs (two neighbouring outputs each) once folded
    # for export: the same cells as the Keras encoder before folding, and still float in
    # the int8 and dynamic-range files (they read 3 and 8 channels).
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter

    model = VQAModel(get_preset("reference", image_size=64, vocab_size=10, num_answers=3))
    encoder = model.get_layer("image_encoder")
    images = np.random.default_rng(0).uniform(0, 255, (4, 1, 64, 64, 3)).astype(np.float32)
    expected = np.asarray(encoder(images[0]))
    exporter.fold_for_export(model)

    class Encoder(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((1, 64, 64, 3), tf.float32, name="image")])
        def serve(self, image):
            return {"cells": encoder(image)}

    module = Encoder()
    path = str(tmp_path / "encoder")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    float_layers = tflite.float_layers_in_int8(model)
    files = {q: tflite.convert(path, ["serving_default"], q, float_layers=float_layers,
                               representative_dataset=lambda: (("serving_default", {"image": image})
                                                               for image in images))
             for q in ("float32", "dynamic_range", "int8")}
    float32 = schema.TensorType.FLOAT32
    for name, flatbuffer in files.items():
        tflite_model = tflite_edits.read(flatbuffer)
        ops = tflite_edits.opcode_names(tflite_model)
        subgraph = tflite_model.subgraphs[0]
        convs = [[subgraph.tensors[i] for i in op.inputs[:2]] for op in subgraph.operators
                 if ops[op.opcodeIndex] == "CONV_2D"]
        assert [(data.type, weights.type, int(weights.shape[0])) for data, weights in convs] \
            == [(float32, float32, 16)] * 3, name
    runner = Interpreter(model_content=files["float32"]).get_signature_runner("serving_default")
    cells = runner(image=images[0])["cells"]
    assert cells.shape == expected.shape == (1, 8, 8, 8)
    np.testing.assert_allclose(cells, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def _rgb_conv_saved_model(path):
    """A 7x7 conv 3 -> 16 channels (2352 weights: enough for dynamic-range quantization),
    then a 5x5 conv 16 -> 8."""
    rng = np.random.default_rng(0)
    kernel = tf.constant(rng.normal(size=(7, 7, 3, 16)).astype(np.float32))
    kernel2 = tf.constant(rng.normal(size=(5, 5, 16, 8)).astype(np.float32))

    class Convs(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((1, 32, 32, 3), tf.float32, name="image")])
        def serve(self, image):
            x = tf.nn.relu(tf.nn.conv2d(image, kernel, 2, "SAME"))
            return {"cells": tf.nn.conv2d(x, kernel2, 1, "SAME")}

    module = Convs()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def test_dynamic_range_keeps_rgb_conv_float_and_answers_alike(tmp_path):
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter

    path = _rgb_conv_saved_model(str(tmp_path / "convs"))
    files = {q: tflite.convert(path, ["serving_default"], q)
             for q in ("float32", "dynamic_range")}
    convs = _convs(files["dynamic_range"])
    float32, int8 = schema.TensorType.FLOAT32, schema.TensorType.INT8
    assert convs == [(float32, float32, 3), (float32, int8, 16)]  # Only the RGB conv edited.
    image = np.random.default_rng(1).uniform(0, 1, (1, 32, 32, 3)).astype(np.float32)
    outputs = {}
    for name, flatbuffer in files.items():
        runner = Interpreter(model_content=flatbuffer).get_signature_runner("serving_default")
        outputs[name] = runner(image=image)["cells"]
    scale = np.abs(outputs["float32"]).max()
    # The second conv is still int8-weighted: close to float32, not equal.
    np.testing.assert_allclose(outputs["dynamic_range"], outputs["float32"], atol=0.05 * scale)
    # Unchanged when nothing qualifies.
    assert tflite_edits.float_weights_for_narrow_convs(files["float32"]) == files["float32"]


def test_shared_weight_buffers_are_dequantized_once(tmp_path, monkeypatch):
    import copy

    from ai_edge_litert import schema_py_generated as schema

    path = _rgb_conv_saved_model(str(tmp_path / "convs"))
    monkeypatch.setattr(tflite_edits, "float_weights_for_narrow_convs", lambda f: f)
    hybrid = tflite.convert(path, ["serving_default"], "dynamic_range")
    monkeypatch.undo()
    model = tflite_edits.read(hybrid)
    model.subgraphs.append(copy.deepcopy(model.subgraphs[0]))  # Same buffers.
    edited = tflite_edits.float_weights_for_narrow_convs(tflite_edits.write(model))
    float32, int8 = schema.TensorType.FLOAT32, schema.TensorType.INT8
    assert _convs(hybrid) == [(float32, int8, 3), (float32, int8, 16)]
    assert _convs(edited) == [(float32, float32, 3), (float32, int8, 16)] * 2
    expected = tflite_edits.float_weights_for_narrow_convs(hybrid)
    once = tflite_edits.read(expected)
    twice = tflite_edits.read(edited)
    weights = once.subgraphs[0].tensors[once.subgraphs[0].operators[0].inputs[1]]
    np.testing.assert_array_equal(np.asarray(twice.buffers[weights.buffer].data),
                                  np.asarray(once.buffers[weights.buffer].data))


def test_export_needs_the_tensorflow_backend(monkeypatch):
    import keras
    import pytest

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(tflite.ExportError, match="needs the TensorFlow backend.*'jax'"):
        exporter.export("no_such_run", "no_such_output")
