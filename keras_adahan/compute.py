"""The compute a model spends, and what this machine's matmuls reach.

`flops` counts floating-point operations per image and per question with TensorFlow's graph
profiler on the model's own graph at batch 1 (multiply and add count as two operations), so
what it reports is what runs, layers of any kind included. `matmul_flops` times a matmul
on the Keras backend in use (no TensorFlow needed): the training benchmark's yardstick, and
what the trainer's `--dtype auto` decides by (`auto_dtype`).
"""

import functools
import time

import keras


def flops(model):
    """`{"image": FLOPs of the image encoder (once per image), "question": FLOPs of the
    question branch, fusion, attention, aggregation and classifier (once per question)}`."""
    import tensorflow as tf  # Here: the matmul timing below runs without TensorFlow.
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
        # The v1 profiler logs deprecation notices about its own internals.
        logger = tf.get_logger()
        level = logger.level
        logger.setLevel("ERROR")
        try:
            return int(tf.compat.v1.profiler.profile(graph=graph, options=options)
                       .total_float_ops)
        finally:
            logger.setLevel(level)

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


# --dtype auto trains in mixed_bfloat16 where a bfloat16 matmul reaches this many times
# float32's FLOP/s: whether bfloat16 pays follows its matmul speed (docs/speed.md, "Mixed
# precision").
BFLOAT16_SPEEDUP = 1.5


def matmul_timer(dtype="float32", size=2048):
    """A function that runs one `size` x `size` matmul in `dtype` on the Keras backend and
    its default device and returns its seconds; warmed up (kernels primed, XLA compiled)."""
    a = keras.ops.cast(keras.random.normal((size, size), seed=0), dtype)
    b = keras.ops.cast(keras.random.normal((size, size), seed=1), dtype)

    def timed():
        start = time.perf_counter()
        # Reading one element back waits for the whole product (GPUs too).
        keras.ops.convert_to_numpy(keras.ops.cast(keras.ops.matmul(a, b)[:1, :1], "float32"))
        return time.perf_counter() - start

    timed()
    return timed


def matmul_flops(dtype="float32", size=2048, seconds=2.0):
    """FLOP/s of a `size` x `size` matmul in `dtype` (2 * size**3 FLOPs), the best of the
    calls within `seconds` (at least three), with the threads the backend is set to use."""
    timed = matmul_timer(dtype, size)
    best, calls, deadline = float("inf"), 0, time.perf_counter() + seconds
    while calls < 3 or time.perf_counter() < deadline:
        best, calls = min(best, timed()), calls + 1
    return 2 * size**3 / best


@functools.cache
def bfloat16_speedup(size=2048, calls=3):
    """How many times float32's FLOP/s a bfloat16 matmul reaches here, best call against
    best call, the two alternating so that other work on the machine slows both alike;
    measured once per process. Above 1 where the hardware has bfloat16 units (AMX, some
    AVX512-BF16 CPUs, GPUs), below 1 where bfloat16 is emulated."""
    timers = {dtype: matmul_timer(dtype, size) for dtype in ("float32", "bfloat16")}
    best = {dtype: float("inf") for dtype in timers}
    for _ in range(calls):
        for dtype, timed in timers.items():
            best[dtype] = min(best[dtype], timed())
    return best["float32"] / best["bfloat16"]


def auto_dtype():
    """`(policy, speedup)`: the dtype policy the trainer's `--dtype auto` takes on this
    machine ("mixed_bfloat16" or "float32") and the bfloat16 matmul speedup it goes by
    (`None` where a bfloat16 matmul could not run: float32)."""
    try:
        speedup = bfloat16_speedup()
    except Exception:  # A backend or device without bfloat16 matmuls.
        return "float32", None
    return ("mixed_bfloat16" if speedup >= BFLOAT16_SPEEDUP else "float32"), speedup
