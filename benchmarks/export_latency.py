"""Latency per question of the exported VQA model, 1 thread: Keras, SavedModel, TFLite,
beside the PyTorch reference's inference measured in the same run.

    python benchmarks/export_latency.py --run reference=/tmp/runs/export_reference \\
        --run default=/tmp/runs/export_default --output /tmp/export_latency.json
    python benchmarks/export_latency.py --presets reference --profile   # per-layer times

For each preset: exports the run (or, without `--run`, a freshly built model with the
classic vocabulary sizes; latency does not depend on training), then times with one
thread, median (and 10th percentile) over `--repeats` calls after a warm-up, every row of
the preset side by side (ten turns, each making every row's share of its calls), so that
a slow minute of the machine hits all rows alike and their ratios hold:
- Keras (a `tf.function` of the model) and the SavedModel's serving_default, batch 1;
- each .tflite: the one-call `vqa` signature, `encode` alone, and `answer` alone (the cost
  of a further question on an already-encoded image), as interpreter invokes (what a C++,
  Kotlin or Swift app pays) and as a Python `LiteRTVQA.predict` call; with XNNPACK (LiteRT's
  default) and without;
- with `--profile`, where the image encoder's time goes: the encoder cut after each
  layer, converted to float32 and to int8 with every layer quantized, and timed; the
  differences between rows are the per-layer costs, the evidence for the layers the int8
  export keeps float (marked; `export.tflite.float_layers_in_int8`);
- the PyTorch reference (benchmarks/pytorch_reference.py, 1 thread, `torch.no_grad()`, one
  example a call), timed side by side with each preset's rows; each row's ratio is the reference's time
  over the row's (above 1: faster than the reference). Left out without torch.
Also the file sizes, how much of each .tflite is weights, and the machine.
"""

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras_adahan  # noqa: E402,F401  (its quiet start-up, before TensorFlow loads)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# One thread for TensorFlow (Keras, SavedModel) as for LiteRT; before any TF op runs.
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

import keras  # noqa: E402

from keras_adahan import cli  # noqa: E402
from keras_adahan import run_files  # noqa: E402
from keras_adahan.export import exporter  # noqa: E402
from keras_adahan.export import tflite  # noqa: E402
from keras_adahan.export.litert_vqa import LiteRTVQA  # noqa: E402

import machine  # noqa: E402


def timed(function, repeats, warmup=20):
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return summary(times)


def summary(times):
    times = sorted(times)
    return {"median_ms": 1000 * statistics.median(times),
            "p10_ms": 1000 * times[len(times) // 10]}


def timed_side_by_side(functions, rounds=10, warmup=3):
    """`{label: summary}` of `functions` (`{label: (callable, calls)}`), timed in `rounds`
    turns: each turn makes every callable's share of its calls in a row (after `warmup`
    untimed ones), so a slow minute of the machine hits every row alike instead of the one
    timed then. Rows are compared within one run, as the issue asks of ratios."""
    for function, _ in functions.values():
        for _ in range(20):  # First calls: allocation, XNNPACK's packing, tracing.
            function()
    times = {label: [] for label in functions}
    for _ in range(rounds):
        for label, (function, calls) in functions.items():
            for _ in range(warmup):
                function()
            for _ in range(max(1, calls // rounds)):
                start = time.perf_counter()
                function()
                times[label].append(time.perf_counter() - start)
    return {label: summary(values) for label, values in times.items()}


def invoke_only(vqa, signature, **inputs):
    """Times the interpreter alone: inputs set once, then `Invoke` of the signature."""
    runner = vqa.runners[signature]
    runner(**vqa._feed(signature, **inputs))  # Allocates and sets the inputs.
    # The SignatureRunner's own invoke, without its per-call resize/allocate/copy.
    return lambda: runner._interpreter_wrapper.Invoke(runner._subgraph_index)


def fresh_run(preset, folder, data_dir):
    """A run folder holding an untrained model of `preset` with barn_vqa/classic sizes."""
    from keras_adahan import data
    from keras_adahan.model import build_model
    from keras_adahan.presets import get_preset

    dataset = data.prepare_dataset("classic", data_dir)  # Built there if missing.
    vocabulary = data.build_vocabulary(dataset)
    answers = dataset.answer_names
    config = get_preset(preset, vocab_size=vocabulary.size, num_answers=len(answers))
    os.makedirs(folder, exist_ok=True)
    build_model(config).save(os.path.join(folder, run_files.MODEL))
    run_files.write_run_files(folder, config, {"dataset": "classic", "data_dir": data_dir},
                              vocabulary, answers)
    return folder


def weight_bytes(flatbuffer):
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(bytearray(flatbuffer), 0)
    return sum(model.Buffers(i).DataLength() for i in range(model.BuffersLength()))


def benchmark_preset(preset, run_dir, repeats, work, no_reference=False):
    export_dir = os.path.join(work, f"export_{preset}")
    exporter.export(run_dir, export_dir, parity=False, log=lambda m: print(f"  {m}", flush=True))
    run = run_files.load_run(run_dir)
    model = run.model
    image_size, max_question_length = model.config.image_size, model.config.max_question_length
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, image_size, image_size, 3)).astype(np.float32)
    question = np.zeros((1, max_question_length), np.int32)
    question[0, -6:] = rng.integers(2, run.vocabulary.size, 6)
    results = {"run": run_dir, "num_parameters": int(model.count_params()), "rows": {}}

    keras_call = tf.function(lambda i, q: model({"image": i, "question": q}, training=False))
    image_t, question_t = tf.constant(image), tf.constant(question)
    serve = tf.saved_model.load(os.path.join(export_dir, exporter.SAVED_MODEL)).signatures[
        "serving_default"]
    # Every row's calls, timed side by side (the PyTorch reference among them).
    functions = {("keras", "vqa"): (lambda: keras_call(image_t, question_t), repeats // 3),
                 ("saved_model", "vqa"): (lambda: serve(image=image_t, question=question_t),
                                          repeats // 3)}
    reference = None if no_reference else reference_inference()
    if reference:
        functions[("pytorch_reference", "vqa")] = (reference, repeats)
    results["rows"]["keras"] = {}
    results["rows"]["saved_model"] = {"bytes": exporter._folder_bytes(
        os.path.join(export_dir, exporter.SAVED_MODEL))}
    for quantization in tflite.QUANTIZATIONS:
        name = exporter.tflite_name(quantization)
        path = os.path.join(export_dir, name)
        with open(path, "rb") as f:
            flatbuffer = f.read()
        results["rows"][name] = {"bytes": len(flatbuffer),
                                 "weight_bytes": weight_bytes(flatbuffer)}
        # An interpreter per timed call: calls of one interpreter's other signatures in
        # between would leave its tensors unallocated ("model that is not ready").
        for xnnpack in (True, False):
            vqa = functools.partial(LiteRTVQA, path, num_threads=1, xnnpack=xnnpack)
            suffix = "" if xnnpack else "_no_xnnpack"
            cells = vqa().encode(image)
            functions[(name, "vqa" + suffix)] = (
                invoke_only(vqa(), "vqa", image=image, question=question), repeats)
            functions[(name, "encode" + suffix)] = (
                invoke_only(vqa(), "encode", image=image), repeats)
            functions[(name, "answer" + suffix)] = (
                invoke_only(vqa(), "answer", cells=cells, question=question), repeats * 3)
            if xnnpack:
                functions[(name, "python_predict")] = (
                    functools.partial(vqa().predict, image, question), repeats)
                functions[(name, "python_answer")] = (
                    functools.partial(vqa().answer, cells, question), repeats * 3)
    for (row, call), figures in timed_side_by_side(functions).items():
        if row == "pytorch_reference":
            results["pytorch_reference"] = figures
        else:
            results["rows"].setdefault(row, {})[call] = figures
    for quantization in tflite.QUANTIZATIONS:
        row = results["rows"][exporter.tflite_name(quantization)]
        print(f"  {quantization}: vqa {row['vqa']['median_ms']:.3f} ms, answer "
              f"{row['answer']['median_ms']:.4f} ms", flush=True)
    return results, export_dir, model


def reference_inference():
    """A callable making one PyTorch reference inference (1 thread, no_grad), or `None`
    without torch."""
    try:
        import pytorch_reference
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    model = pytorch_reference.build_reference(num_words=24, num_answers=4)
    return functools.partial(pytorch_reference.infer, model, 1)


def profile_encoder(model, repeats, calibration_images, work):
    """Milliseconds of the encoder cut after each of its layers (float32 and int8); each
    cut is written under the folder `work`."""
    exporter.fold_for_export(model)  # As the export does: constant kernels quantize.
    kept_float = tflite.float_layers_in_int8(model)
    encoder = model.get_layer("image_encoder")
    size = encoder.input.shape[1]
    rows = []
    for layer in encoder.layers[1:]:
        cut = keras.Model(encoder.input, layer.output)
        archive = keras.export.ExportArchive()
        archive.track(cut)
        archive.add_endpoint(
            "encode", lambda image: {"cells": cut(image, training=False)},
            input_signature=[tf.TensorSpec((1, size, size, 3), tf.float32, name="image")])
        folder = tempfile.mkdtemp(dir=work)
        archive.write_out(folder, verbose=False)
        row = {"layer": layer.name, "shape": list(layer.output.shape[1:])}
        for quantization in ("float32", "int8"):
            def representative():
                for image in calibration_images:
                    yield "encode", {"image": image[None].astype(np.float32)}

            flatbuffer = tflite.convert(folder, ["encode"], quantization,
                                        representative_dataset=representative,
                                        float_layers=())  # Every layer in int8.
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(model_content=flatbuffer, num_threads=1)
            runner = interpreter.get_signature_runner("encode")
            detail = runner.get_input_details()["image"]
            runner(image=np.zeros(detail["shape"], detail["dtype"]))
            row[quantization] = timed(
                lambda: runner._interpreter_wrapper.Invoke(runner._subgraph_index),
                repeats)["median_ms"]
        rows.append(row)
        row["int8_export_keeps_float"] = layer.name in kept_float
        print(f"  {row['layer']:<18} {str(row['shape']):<16} float32 {row['float32']:.3f} ms"
              f"  int8 {row['int8']:.3f} ms" + ("  (the int8 export keeps it float)"
                                                if row["int8_export_keeps_float"] else ""),
              flush=True)
    return rows


def format_table(preset, results, reference_ms=None):
    lines = [f"{preset} preset ({results['num_parameters']:,} parameters), 1 thread, "
             "median ms per call" + (f"; x: the PyTorch reference's {reference_ms:.2f} ms "
                                     "over the one call" if reference_ms else ""),
             f"{'artifact':<26}{'size':>10}{'weights':>10}{'one call':>10}{'x':>7}"
             f"{'encode':>9}{'answer':>9}{'no XNNPACK':>12}{'Python':>9}"]
    for name, row in results["rows"].items():
        size = f"{row['bytes'] / 1024:.0f} KB" if "bytes" in row else ""
        weights = f"{row['weight_bytes'] / 1024:.0f} KB" if "weight_bytes" in row else ""
        one_call = row.get("vqa", row)["median_ms"]
        line = f"{name:<26}{size:>10}{weights:>10}{one_call:>10.3f}"
        line += f"{reference_ms / one_call:>6.1f}x" if reference_ms else f"{'':>7}"
        if "encode" in row:
            line += (f"{row['encode']['median_ms']:>9.3f}{row['answer']['median_ms']:>9.4f}"
                     f"{row['vqa_no_xnnpack']['median_ms']:>12.3f}"
                     f"{row['python_predict']['median_ms']:>9.3f}")
        lines.append(line)
    return "\n".join(lines)


def preset_run(text):
    """argparse type of --run: PRESET=RUN_DIR."""
    preset, _, run_dir = text.partition("=")
    if not preset or not run_dir:
        raise argparse.ArgumentTypeError(f"expected PRESET=RUN_DIR, received {text!r}")
    return preset, os.path.expanduser(run_dir)


def measure(args, runs, work):
    """The figures of each of `--presets`, its fresh run and exports written under `work`."""
    description = machine.describe({"tensorflow": 1, "litert": 1, "torch": 1})
    print(machine.format_machine(description), flush=True)
    report = {"machine": description}
    for preset in args.presets.split(","):
        print(f"{preset}:", flush=True)
        run_dir = runs.get(preset) or fresh_run(preset, os.path.join(work, f"run_{preset}"),
                                                args.data_dir)
        results, export_dir, model = benchmark_preset(preset, run_dir, args.repeats, work,
                                                      args.no_reference)
        reference = results.get("pytorch_reference")
        if args.profile:
            from keras_adahan.export.exporter import calibration_samples
            from keras_adahan import data

            run = run_files.load_run(run_dir)
            dataset = data.run_dataset(run, args.data_dir)
            images = calibration_samples(model, dataset, run.vocabulary, 20).images
            results["encoder_profile"] = profile_encoder(model, args.repeats, images, work)
        report[preset] = results
        print(format_table(preset, results, reference and reference["median_ms"]), flush=True)
    if args.output:
        run_files.write_json(args.output, report)
    return report


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", default=[], type=preset_run,
                        help="PRESET=RUN_DIR, a trained run of that preset (repeatable)")
    parser.add_argument("--presets", default="reference,default")
    parser.add_argument("--repeats", type=cli.positive_int, default=300)
    parser.add_argument("--profile", action="store_true",
                        help="also time the image encoder layer by layer")
    parser.add_argument("--output", default=None, help="write the figures to this JSON file")
    parser.add_argument("--data_dir", default=None,
                        help="TFDS folder holding barn_vqa/classic (built there if missing; "
                             "sizes the fresh runs, calibrates --profile). Default: TFDS's")
    parser.add_argument("--no_reference", action="store_true",
                        help="do not time the PyTorch reference")
    args = parser.parse_args(argv)
    runs = dict(args.run)
    with tempfile.TemporaryDirectory(prefix="export_latency_") as work:  # Fresh runs, exports.
        try:
            return measure(args, runs, work)
        except tflite.ExportError as error:  # A --run that is not a run, named by the export.
            raise cli.UserError(str(error)) from None


if __name__ == "__main__":
    cli.run(main)
