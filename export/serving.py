"""The serving functions of a VQA model: one-call `vqa`, and `encode` + `answer`.

    vqa(image, question)    -> {"probabilities", "mask", "presence"}
    encode(image)           -> {"cells"}
    answer(cells, question) -> {"probabilities", "mask", "presence"}

`encode` + `answer` is "encode once, ask many": an app encodes a photo once and pays only
the question branch and the head for each further question. `cells` is the encoded image,
(G, G, P) per image: the image encoder's cells through the cells' share of the answer head's
first fusion layer (`keras_adahan.model.SplitAnswerHead`), which no question changes.
"""

import contextlib

import keras
import tensorflow as tf

from keras_adahan.export.litert_vqa import SIGNATURES  # noqa: F401  (the endpoints below)
from keras_adahan.model import SplitAnswerHead



def cells_shape(model):
    """`(G, G, P)`: the `encode` signature's output and the `answer` signature's input."""
    return SplitAnswerHead(model).encoded_shape


def _app_outputs(outputs):
    # Probabilities, not logits: what an app shows. The mask is 0/1 float.
    return {
        "probabilities": tf.nn.softmax(outputs["answer"], axis=-1),
        "mask": outputs["mask"],
        "presence": outputs["presence"],
    }


def serving_archive(model, batch_size=None):
    """A `keras.export.ExportArchive` with the endpoints `vqa`, `encode` and `answer`.

    Args:
        model: a `keras_adahan.VQAModel`.
        batch_size: int or `None`. Static batch size of every input; `None` keeps it
            dynamic (the SavedModel), TFLite wants 1 (no shape arithmetic in the graph).

    Returns:
        The archive; `archive.write_out(path)` writes a SavedModel whose signatures are the
        three endpoints plus `serving_default` (= `vqa`).
    """
    image_encoder = model.get_layer("image_encoder")
    split_head = SplitAnswerHead(model)
    config = model.config
    image = tf.TensorSpec((batch_size, config.image_size, config.image_size, 3), tf.float32,
                          name="image")
    question = tf.TensorSpec((batch_size, config.max_question_length), tf.int32, name="question")
    cells = tf.TensorSpec((batch_size,) + split_head.encoded_shape, tf.float32, name="cells")

    def vqa(image, question):
        return _app_outputs(model({"image": image, "question": question}, training=False))

    def encode(image):
        return {"cells": split_head.encode_cells(image_encoder(image, training=False))}

    def answer(cells, question):
        return _app_outputs(split_head(cells, question))

    archive = keras.export.ExportArchive()
    archive.track(model)
    # The first endpoint is also `serving_default`.
    archive.add_endpoint("vqa", vqa, input_signature=[image, question])
    archive.add_endpoint("encode", encode, input_signature=[image])
    archive.add_endpoint("answer", answer, input_signature=[cells, question])
    return archive


@contextlib.contextmanager
def rolled_rnns(model):
    """Inside the block, the model's GRU/LSTM layers run as a loop instead of unrolled.

    The model unrolls its question RNN: fastest to train on a CPU, but a TFLite file then
    holds every step's ops and tensors, once per signature (~600 ops, most of the file for
    a small model; in int8 each step also gets its own requantized biases). A loop is one
    WHILE op over a body of one step. The weights and the cell's math are the layer's own.
    """
    layers = [layer for layer in model.get_layer("answer_head").layers
              if isinstance(layer, keras.layers.RNN) and layer.unroll]
    for layer in layers:
        layer.call = _rolled_call(layer)  # Instance attribute: only this model, only here.
    try:
        yield model
    finally:
        for layer in layers:
            del layer.call


def _rolled_call(layer):
    if layer.return_sequences or layer.return_state or layer.go_backwards:
        raise ValueError(f"rolled_rnns: {layer.name} must return only its last output")

    def call(sequences, initial_state=None, mask=None, training=False):
        steps = sequences.shape[1]
        states = layer.cell.get_initial_state(batch_size=tf.shape(sequences)[0])

        def step(index, states, remaining):
            _, states = layer.cell(remaining[0], states, training=False)
            # Rotate the steps rather than read a fixed tensor at `index`: the int8
            # calibrator crashes on a loop input that the body passes through unchanged
            # (tensorflow/tensorflow#75140).
            remaining = tf.concat([remaining[1:], remaining[:1]], axis=0)
            return index + 1, states, remaining

        _, states, _ = tf.while_loop(
            lambda index, *_: index < steps, step,
            (tf.constant(0), states, tf.transpose(sequences, [1, 0, 2])))
        return states[0]  # GRU and LSTM: the last output is the hidden state.

    return call
