"""The compute a model spends: floating-point operations per image and per question.

Counted by TensorFlow's graph profiler on the model's own graph at batch 1 (multiply and
add count as two operations), so what it reports is what runs, layers of any kind included.
"""

import tensorflow as tf


def flops(model):
    """`{"image": FLOPs of the image encoder (once per image), "question": FLOPs of the
    question branch, fusion, attention, aggregation and classifier (once per question)}`."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    config = model.config
    encoder = model.get_layer("image_encoder")
    head = model.get_layer("answer_head")
    image = tf.TensorSpec((1, config.image_size, config.image_size, 3), tf.float32)
    cells = tf.TensorSpec((1, config.grid_size, config.grid_size, config.cell_channels))
    question = tf.TensorSpec((1, config.max_question_length), tf.int32)

    def count(function, *specs):
        concrete = tf.function(function, autograph=False).get_concrete_function(*specs)
        graph = convert_variables_to_constants_v2(concrete).graph
        options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        options["output"] = "none"
        return int(tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops)

    return {
        "image": count(lambda x: encoder(x, training=False), image),
        "question": count(lambda c, q: head({"cells": c, "question": q}, training=False),
                          cells, question),
    }


def describe(model, questions_per_image):
    """One line: compute per image, per question, and per question with the image shared."""
    counts = flops(model)
    shared = counts["image"] / questions_per_image + counts["question"]
    return (f"compute: {counts['image'] / 1e6:.1f} MFLOPs per image (encoder), "
            f"{counts['question'] / 1e6:.2f} MFLOPs per question (question, attention, "
            f"aggregation, classifier): {shared / 1e6:.1f} MFLOPs per question with the image "
            f"encoded once for its {questions_per_image}")
