"""Training throughput, the project beside the PyTorch reference in the same run.

    python benchmarks/train_throughput.py                     # reference and default presets
    python benchmarks/train_throughput.py --dtype float32 mixed_bfloat16 --rounds 3
    KERAS_BACKEND=jax python benchmarks/train_throughput.py  # another Keras backend
    KERAS_BACKEND=jax python benchmarks/train_throughput.py --preset default clevr \
        --batch_size 32 256 --no-peak                          # on a GPU (JAX, no TF)

Questions per second of the trainer's own training model (each image encoded once for its
3 questions, as in barn_vqa/classic) under `model.fit`, fed from a cached in-memory tf.data
pipeline (other backends: batches already on their device, a GPU's memory on a GPU), so
the figure is the model's and Keras' speed, not the disk's. Each round times every preset
x dtype x batch size, then the PyTorch reference's own loop (benchmarks/pytorch_reference.py:
one example a step, Adam, as published; on the GPU where the backend computes on one) for
about as long; the ratios divide each round's figures by the reference's of the same
round, so other load on the machine hits both sides.
Prints the machine, the median over rounds, and the achieved FLOP/s (training = 3 x the
forward FLOPs counted by `keras_adahan.compute`) against a matmul peak measured here.
Without torch (`pip install -e ".[benchmarks]"`), the reference columns are left out.
With `--profile` (TensorFlow backend), each model's steps are also traced with TensorFlow's
profiler and the op time is summed per layer, forward and backward apart: where a step goes.
"""

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras_adahan  # noqa: E402,F401  (its quiet start-up, before TensorFlow loads)
import keras  # noqa: E402
import numpy as np  # noqa: E402

import machine  # noqa: E402
from keras_adahan import cli  # noqa: E402
from keras_adahan import compute  # noqa: E402
from keras_adahan.model import build_model, build_training_model  # noqa: E402
from keras_adahan.presets import get_preset  # noqa: E402

QUESTIONS_PER_IMAGE = 3  # barn_vqa/classic
# Off the TensorFlow backend nothing here imports TensorFlow (a GPU machine with JAX or
# PyTorch only can run it): the batches are the backend's tensors, not a tf.data pipeline.
ON_TENSORFLOW = keras.backend.backend() == "tensorflow"


def build(preset, dtype, batch_size, variant, questions_per_image, aggregation=None):
    """A compiled training model of `preset` under dtype policy `dtype`, and its data."""
    changes = {"aggregation": aggregation} if aggregation else {}
    config = get_preset(preset, variant=variant, vocab_size=24, num_answers=4, **changes)
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy(dtype)
    try:
        model = build_model(config)
        train_model = build_training_model(model, questions_per_image)
        train_model.compile(
            optimizer=keras.optimizers.Adam(1e-3),  # The speed does not depend on it.
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
    finally:
        keras.config.set_dtype_policy("float32")
    rng = np.random.default_rng(0)
    num_images = batch_size * 8
    size = config.image_size
    images = rng.integers(0, 256, (num_images, size, size, 3), dtype=np.uint8)
    questions = rng.integers(2, 24, (num_images, questions_per_image, config.max_question_length))
    answers = rng.integers(0, 4, (num_images, questions_per_image))
    if not ON_TENSORFLOW:
        # Eight batches, already on the backend's device (a GPU's memory): the steps time
        # the model, not copies from the host.
        ds = [({"image": keras.ops.convert_to_tensor(images[rows], "float32"),
                "questions": keras.ops.convert_to_tensor(questions[rows], "int32")},
               keras.ops.convert_to_tensor(answers[rows], "int32"))
              for rows in (slice(i * batch_size, (i + 1) * batch_size) for i in range(8))]
        time_fit(train_model, ds, 10)  # Warm up.
        return model, train_model, ds
    import tensorflow as tf

    ds = (
        tf.data.Dataset.from_tensor_slices(
            ({"image": images, "questions": questions.astype(np.int32)}, answers)
        )
        .cache()
        .repeat()
        .batch(batch_size)
        .map(lambda x, y: ({"image": tf.cast(x["image"], tf.float32),
                            "questions": x["questions"]}, y))
        .prefetch(tf.data.AUTOTUNE)
    )
    train_model.fit(ds, steps_per_epoch=10, epochs=1, verbose=0, shuffle=False)  # Warm up.
    return model, train_model, ds


def time_fit(train_model, ds, steps):
    """Seconds of `steps` training steps: inside one `fit` over the cached pipeline, from
    the end of its first step to the end of its last (`fit`'s set-up and teardown, up to a
    second on this machine, are not training speed), or over a list of batches on the
    backend's device, again and again. The step-end callback makes `fit` run step after
    step as the trainer's does (its `TerminateOnNaN` reads every step's loss)."""
    if isinstance(ds, list):
        batches = ds
        ds = (batch for _ in itertools.count() for batch in batches)
    ends = []
    step_ends = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: ends.append(time.perf_counter()))
    train_model.fit(ds, steps_per_epoch=steps + 1, epochs=1, verbose=0, shuffle=False,
                    callbacks=[step_ends, keras.callbacks.TerminateOnNaN()])
    return ends[-1] - ends[0]


def profile(train_model, ds, steps, top=12):
    """Lines of the `top` layers by op time over `steps` traced training steps, forward and
    backward (gradient) ops apart, each as a share of all op time (ops on both of TF's
    executor threads; they overlap, so the shares are of CPU time, not of the step)."""
    import collections
    import glob
    import re
    import shutil
    import tempfile

    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2  # docs/private_apis.md

    logdir = tempfile.mkdtemp(prefix="train_profile_")
    try:
        tf.profiler.experimental.start(logdir)
        time_fit(train_model, ds, steps)
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        with open(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0],
                  "rb") as f:
            space.ParseFromString(f.read())
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    # Layer names, also of the nested encoder and head: op scopes are layer names, made
    # unique with a suffix ("conv_2_1"); other scopes are ops' own ("strided_slice_1").
    layers = [train_model, *train_model.layers]
    names = {layer.name for model in layers for layer in [model, *getattr(model, "layers", [])]}
    totals = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name  # "scope/.../op:Type"
                if "/" not in name or "::" in name:  # Not an op (executor bookkeeping).
                    continue
                scopes = name.rsplit(":", 1)[0].split("/")
                layer = next((scope for scope in (re.sub(r"_\d+$", "", s) for s in
                                                  reversed(scopes[:-1])) if scope in names),
                             scopes[-1])
                if any("adam" in scope.lower() for scope in scopes):
                    layer = "optimizer"
                direction = "backward" if "gradient_tape" in scopes else "forward"
                totals[(layer, direction)] += event.duration_ps
    total = sum(totals.values())
    return [f"  {share / total:6.1%}  {layer} ({direction})"
            for (layer, direction), share in totals.most_common(top)]


def training_flops(model, questions_per_image):
    """Training FLOPs per question (3 x forward: the backward pass is about twice the
    forward), or `None` off the TensorFlow backend (the counter reads a TF graph)."""
    if not ON_TENSORFLOW:
        return None
    counts = compute.flops(model)
    return 3 * (counts["image"] / questions_per_image + counts["question"])


def reference_steps_per_second(seconds, device="cpu"):
    """Steps/s of the PyTorch reference's training loop on `device` ("cpu", "cuda") over
    about `seconds`, or `None` without torch. In a process of its own: the Keras backend's
    thread pools (JAX's especially) would otherwise compete with PyTorch's threads in this
    one. Each 20 steps end by reading the loss, so a GPU's queue is drained in the time.
    A torch without CUDA beside a GPU backend stops the benchmark with one line."""
    code = textwrap.dedent(f"""
        import sys, time, torch, pytorch_reference
        if "{device}" == "cuda" and not torch.cuda.is_available():
            sys.exit("torch here has no CUDA, so the PyTorch reference cannot run on the "
                     "GPU beside the project; install a CUDA build or pass --no_reference")
        model = pytorch_reference.build_reference(num_words=24, num_answers=4).to("{device}")
        pytorch_reference.train_steps(model, 10)  # Warm up.
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < {seconds}:
            pytorch_reference.train_steps(model, 20)
            steps += 20
        print(steps / (time.perf_counter() - start))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.abspath(__file__)))
    if result.returncode != 0:
        if "No module named 'torch'" in result.stderr:
            return None
        if "has no CUDA" in result.stderr:
            raise SystemExit(f"error: {result.stderr.strip()}")
        raise RuntimeError(result.stderr[-2000:])
    return float(result.stdout.split()[-1])


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", nargs="+", default=["reference", "default"])
    parser.add_argument("--dtype", nargs="+", default=["float32", "mixed_bfloat16"],
                        choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--variant", default="han")
    parser.add_argument("--batch_size", type=cli.positive_int, nargs="+", default=[32],
                        help="images per step (several: each is timed)")
    parser.add_argument("--steps", type=cli.positive_int, default=40,
                        help="training steps timed per round")
    parser.add_argument("--rounds", type=cli.positive_int, default=2,
                        help="rounds of (every preset x dtype x batch size, then the reference)")
    parser.add_argument("--questions", type=cli.positive_int, default=QUESTIONS_PER_IMAGE,
                        help="questions per image (barn_vqa 3; CLEVR about 10)")
    parser.add_argument("--aggregation", default=None,
                        help="override the preset's aggregation (e.g. relational: HAN+RN)")
    parser.add_argument("--per_question", action="store_true",
                        help="the alternative the trainer avoids: every question brings its "
                             "own copy of the image (encoded once per question)")
    parser.add_argument("--no_reference", action="store_true",
                        help="do not run the PyTorch reference")
    parser.add_argument("--profile", action="store_true",
                        help="trace each model's steps and print the layers that take the "
                             "most op time (TensorFlow backend)")
    parser.add_argument("--peak", action=argparse.BooleanOptionalAction, default=True,
                        help="measure the matmul peak (float32, bfloat16) for the FLOP/s column")
    args = parser.parse_args(argv)
    if args.per_question:
        args.questions = 1
    description = machine.describe()
    # The reference runs where the project does: on the GPU if the backend computes on one.
    reference_device = "cuda" if description["gpu"] else "cpu"
    description["threads"] = {keras.backend.backend(): "default (all cores)",
                              f"torch (reference, own process, {reference_device})":
                              "default (all cores)"}
    print(machine.format_machine(description))
    peaks = {}
    if args.peak and ON_TENSORFLOW:
        peaks = {"float32": machine.matmul_peak("float32"),
                 "mixed_bfloat16": machine.matmul_peak("bfloat16")}
        print("  matmul peak: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s"
                                            for k, v in peaks.items()))
    chosen, speedup = compute.auto_dtype()
    print(f"  the trainer's --dtype auto: {chosen} here (bfloat16 matmul {speedup:.2f}x "
          "float32's)")
    print(f"batch {' or '.join(map(str, args.batch_size))} images x {args.questions} "
          f"questions, {args.steps} steps, "
          f"{args.rounds} rounds\n", flush=True)

    built = {(p, d, b): build(p, d, b, args.variant, args.questions, args.aggregation)
             for p in args.preset for d in args.dtype for b in args.batch_size}
    rates = {key: [] for key in built}
    reference = []
    for round_index in range(args.rounds):
        seconds = 0.0
        for key, (_, train_model, ds) in built.items():
            elapsed = time_fit(train_model, ds, args.steps)
            seconds += elapsed
            rates[key].append(args.steps * key[2] * args.questions / elapsed)
        if not args.no_reference:
            # About as long as the project's share of the round, at least 3 s.
            rate = reference_steps_per_second(max(3.0, seconds / len(built)),
                                              reference_device)
            if rate is not None:
                reference.append(rate)
        print(f"round {round_index + 1}: " + ", ".join(
            f"{p}/{d}/{b} {rates[(p, d, b)][-1]:.0f} q/s" for p, d, b in built)
            + (f", reference {reference[-1]:.0f} steps/s" if reference else ""), flush=True)

    width = max(len("preset"), *(len(preset) for preset, _, _ in rates)) + 2
    print(f"\n{'preset':<{width}}{'dtype':<16}{'batch':>6}{'questions/s':>12}"
          f"{'vs reference':>14}{'GFLOP/s':>9}{'of peak':>9}")
    for (preset, dtype, batch), values in rates.items():
        median = statistics.median(values)
        ratio = (statistics.median(v / r for v, r in zip(values, reference))
                 if len(reference) == len(values) else None)
        flops = training_flops(built[(preset, dtype, batch)][0], args.questions)
        line = f"{preset:<{width}}{dtype:<16}{batch:>6}{median:>12.0f}"
        line += f"{ratio:>13.1f}x" if ratio else f"{'':>14}"
        if flops:
            achieved = flops * median
            line += f"{achieved / 1e9:>9.1f}"
            line += f"{achieved / peaks[dtype]:>9.1%}" if dtype in peaks else ""
        print(line)
    if reference:
        print(f"{'PyTorch reference (1 example/step)':<{width + 22}}"
              f"{statistics.median(reference):>12.0f}"
              "   (steps/s = questions/s)")
    if args.profile and ON_TENSORFLOW:
        for (preset, dtype, batch), (_, train_model, ds) in built.items():
            print(f"\n{preset}/{dtype}/batch {batch}: share of op time by layer over "
                  f"{args.steps} steps")
            print("\n".join(profile(train_model, ds, args.steps)))
    return rates, reference


if __name__ == "__main__":
    cli.run(main)
