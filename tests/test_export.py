"""Tests of keras_adahan.export on a run trained one epoch on barn_vqa/tiny (see conftest)."""

import os
import re
import unicodedata
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from keras_adahan import data
from keras_adahan import run_files
from keras_adahan.export import exporter
from keras_adahan.export import tflite
from keras_adahan import folders
from keras_adahan.export import tflite_edits
from keras_adahan.export.litert_vqa import LiteRTVQA
from keras_adahan.export.litert_vqa import dequantize
from keras_adahan.export.litert_vqa import quantize
from keras_adahan.export.tflite import ExportError

TFLITE_FILES = [exporter.tflite_name(q) for q in tflite.QUANTIZATIONS]


def test_writes_every_artifact(exported_tiny_run):
    names = set(os.listdir(exported_tiny_run["export_dir"]))
    expected = {"model.keras", "vocabulary.json", "answers.json", "config.json",
                exporter.SAVED_MODEL, exporter.LABELS, exporter.REPORT, *TFLITE_FILES,
                folders.MARKER}
    assert names == expected
    labels = run_files.read_json(os.path.join(exported_tiny_run["export_dir"], exporter.LABELS))
    run = run_files.load_run(exported_tiny_run["run_dir"])
    assert labels["words"] == run.vocabulary.words
    assert labels["answers"] == run.answers
    assert (labels["grid_size"], labels["num_cells"]) == (16, 256)  # 128 px, 3 stride-2 convs.
    assert labels["cell_edges"] == [j / 16 for j in range(17)]  # Centred as the even split.
    report = run_files.read_json(os.path.join(exported_tiny_run["export_dir"], exporter.REPORT))
    assert set(report["artifacts"]) == {exporter.SAVED_MODEL, *TFLITE_FILES}


def test_labels_json_gives_the_cells_where_the_model_centres_them():
    import types

    from keras_adahan.model import VQAModel
    from keras_adahan.presets import PRESETS
    from keras_adahan.text import Vocabulary

    # Sort-of-CLEVR's four 3x3/2 convs centre cell j at 16 j + 10.5 of 75 px.
    model = VQAModel(PRESETS["sort_of_clevr"].replace(vocab_size=4, num_answers=2))
    run = types.SimpleNamespace(model=model, vocabulary=Vocabulary(["red", "square"]),
                                answers=["yes", "no"])
    labels = exporter.labels_dict(run)
    np.testing.assert_allclose(np.array(labels["cell_edges"]) * 75,
                               [0, 18.5, 34.5, 50.5, 66.5, 75])


def test_labels_json_describes_the_tokenizer_predict_uses(exported_tiny_run):
    # An on-device tokenizer is written from labels.json: its words and this description.
    labels = run_files.read_json(os.path.join(exported_tiny_run["export_dir"], exporter.LABELS))
    # The regex's categories, read with unicodedata: Python's `re` has no \p{...}.
    pattern = re.search(r"regex \[((?:\\p\{\w\})+)\]\+", labels["tokenizer"]).group(1)
    categories = tuple(re.findall(r"\\p\{(\w)\}", pattern))
    assert set(categories) == {"L", "N", "M"}
    vocabulary = run_files.load_run(exported_tiny_run["run_dir"]).vocabulary
    length = labels["max_question_length"]
    for question in ("What animal is near the Hay?", "Où est la vache naïve ?",
                     "Cafe\u0301 near the hay_bale, 3x",  # e + a combining accent.
                     "कौन जानवर छत पर है?"):  # Vowel signs: marks, which Python's \w splits.
        normalized = unicodedata.normalize("NFC", question).lower()
        words = "".join(c if unicodedata.category(c).startswith(categories) else " "
                        for c in normalized).split()
        ids = [labels["words"].index(w) + 2 if w in labels["words"] else 1 for w in words]
        assert [0] * (length - len(ids)) + ids == list(vocabulary.encode(question, length))


@pytest.mark.parametrize("name", TFLITE_FILES)
def test_tflite_uses_builtin_ops_only(exported_tiny_run, name):
    with open(os.path.join(exported_tiny_run["export_dir"], name), "rb") as f:
        flatbuffer = f.read()
    ops, custom = tflite.op_names(flatbuffer)
    assert custom == []
    assert set(ops) == {"vqa", "encode", "answer"}
    all_ops = {op for names in ops.values() for op in names}
    assert not any(op.startswith("Flex") or op.startswith("BUILTIN_") for op in all_ops)
    # The image branch only in `encode`; the question branch only in `answer` (and `vqa`).
    assert "CONV_2D" in ops["encode"] and "GATHER" not in ops["encode"]
    assert "GATHER" in ops["answer"] and "TOPK_V2" in ops["vqa"]
    assert "WHILE" in ops["answer"]  # The question RNN as a loop (serving.rolled_rnns).
    # `vqa` runs the encode and answer subgraphs (tflite_edits.vqa_calls_encode_and_answer):
    # one copy of the graph in the file.
    assert "IF" in ops["vqa"] and "IF" not in ops["encode"] + ops["answer"]
    assert len(tflite_edits.read(flatbuffer).subgraphs) == 1 + 1 + 2 + 1  # + the RNN loop's 2
    tflite.check_builtin_ops(flatbuffer)  # Does not raise.


def test_int8_keeps_the_aggregate_layer_norm_and_presence_float(exported_tiny_run):
    from ai_edge_litert import schema_py_generated as schema

    with open(os.path.join(exported_tiny_run["export_dir"], "vqa_int8.tflite"), "rb") as f:
        model = tflite_edits.read(f.read())
    names = tflite_edits.opcode_names(model)
    output_types = {}
    for subgraph in model.subgraphs:
        for operator in subgraph.operators:
            output_types.setdefault(names[operator.opcodeIndex], set()).add(
                subgraph.tensors[operator.outputs[0]].type)
    # RSQRT: the LayerNorm (FLOAT_LAYERS_IN_INT8); SQRT: the presence (FLOAT_OPS_IN_INT8).
    assert output_types["RSQRT"] == output_types["SQRT"] == {schema.TensorType.FLOAT32}
    assert schema.TensorType.INT8 in output_types["CONV_2D"]


def test_parity_on_test_split(exported_tiny_run):
    parity = exported_tiny_run["report"]["parity"]
    artifacts = parity["artifacts"]
    assert parity["questions"] == 12  # tiny: 4 test images x 3 questions.
    for name in (exporter.SAVED_MODEL, "vqa_float32.tflite"):
        assert artifacts[name]["answer_agreement"] == 1.0, name
        assert artifacts[name]["mask_agreement"] == 1.0, name
        assert artifacts[name]["max_probability_difference"] < 1e-4, name
    for name in TFLITE_FILES:
        # Encode once + answer gives the one-call answers, to the bit (the same subgraphs).
        assert artifacts[name]["encode_answer_agreement"] == 1.0, name
        assert artifacts[name]["encode_answer_max_probability_difference"] == 0.0, name
    # A one-epoch model on 12 questions: a loose check (the 1-point bound is measured on
    # barn_vqa/classic, docs/export.md).
    assert artifacts["vqa_int8.tflite"]["answer_agreement"] >= 0.75
    assert artifacts["vqa_float16.tflite"]["answer_agreement"] >= 0.9


@pytest.fixture(scope="module")
def keras_test_answers(exported_tiny_run):
    """The tiny test split's 12 questions as model inputs, with the Keras model's answer
    label (argmax), probabilities and mask for each."""
    run = run_files.load_run(exported_tiny_run["run_dir"])
    dataset = data.prepare_dataset("tiny", exported_tiny_run["data_dir"], build=False)
    config = run.model.config
    arrays = data.question_arrays(dataset, "test", run.vocabulary, config.image_size,
                                  config.max_question_length)
    inputs = next(arrays.batches(12))
    assert len(inputs["question"]) == 12
    out = run.model.predict_on_batch(inputs)
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(out["answer"]))
    return {"inputs": inputs, "answers": probabilities.argmax(-1),
            "probabilities": probabilities, "mask": np.asarray(out["mask"])}


# Answers (of 12) each file must give as the Keras model does, and whether every mask must
# match too. int8 measured 12 of 12 on this run.
TFLITE_AGREEMENT = {"float32": (12, True), "float16": (12, False),
                    "dynamic_range": (12, False), "int8": (12, False)}


@pytest.mark.parametrize("quantization", sorted(TFLITE_AGREEMENT))
def test_tflite_file_answers_like_the_keras_model(exported_tiny_run, keras_test_answers,
                                                  quantization):
    # Runs the file's `vqa` signature with the LiteRT interpreter itself (not LiteRTVQA).
    path = os.path.join(exported_tiny_run["export_dir"], f"vqa_{quantization}.tflite")
    runner = Interpreter(model_path=path).get_signature_runner("vqa")
    image_details = runner.get_input_details()["image"]
    output_details = runner.get_output_details()
    inputs = keras_test_answers["inputs"]
    answers, masks, probabilities = [], [], []
    for row in range(12):
        image = inputs["image"][row:row + 1]
        if np.issubdtype(image_details["dtype"], np.integer):  # int8: quantize the pixels.
            scale, zero_point = image_details["quantization"]
            limits = np.iinfo(image_details["dtype"])
            image = np.clip(np.round(image / scale) + zero_point, limits.min, limits.max)
            image = image.astype(image_details["dtype"])
        out = runner(image=image, question=inputs["question"][row:row + 1].astype(np.int32))
        for name, value in out.items():  # Dequantize any integer output.
            scale, zero_point = output_details[name]["quantization"]
            if np.issubdtype(value.dtype, np.integer) and scale:
                out[name] = (value.astype(np.float32) - zero_point) * scale
        answers.append(int(np.argmax(out["probabilities"][0])))
        masks.append(out["mask"][0])
        probabilities.append(out["probabilities"][0])
    expected, must_match_masks = TFLITE_AGREEMENT[quantization]
    agreeing = int((np.array(answers) == keras_test_answers["answers"]).sum())
    assert agreeing >= expected, (quantization, answers, keras_test_answers["answers"].tolist())
    if must_match_masks:
        np.testing.assert_array_equal(np.array(masks), keras_test_answers["mask"])
        np.testing.assert_allclose(np.array(probabilities),
                                   keras_test_answers["probabilities"], atol=1e-4)


def test_keras_saved_model_and_tflite_answer_the_same(exported_tiny_run):
    import keras_adahan.layers  # noqa: F401  (registers the custom layers)

    export_dir = exported_tiny_run["export_dir"]
    model = keras.models.load_model(os.path.join(export_dir, "model.keras"))
    run = run_files.load_run(exported_tiny_run["run_dir"])
    dataset = data.prepare_dataset("tiny", exported_tiny_run["data_dir"], build=False)
    size = model.input["image"].shape[1]
    arrays = data.question_arrays(dataset, "test", run.vocabulary, size,
                                  model.input["question"].shape[1])
    inputs = next(arrays.batches(12))
    keras_out = model.predict_on_batch(inputs)
    keras_probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(keras_out["answer"]))
    serve = tf.saved_model.load(os.path.join(export_dir, exporter.SAVED_MODEL)).signatures[
        "serving_default"]
    saved = serve(image=tf.constant(inputs["image"]), question=tf.constant(inputs["question"]))
    np.testing.assert_allclose(saved["probabilities"].numpy(), keras_probabilities, atol=1e-5)
    np.testing.assert_array_equal(saved["mask"].numpy(), keras_out["mask"])
    # Another batch size: the SavedModel's batch is dynamic.
    one = serve(image=tf.constant(inputs["image"][:1]), question=tf.constant(inputs["question"][:1]))
    np.testing.assert_allclose(one["probabilities"].numpy(), keras_probabilities[:1], atol=1e-5)

    float32 = LiteRTVQA(os.path.join(export_dir, "vqa_float32.tflite"))
    for row in range(len(inputs["question"])):
        out = float32.predict(inputs["image"][row], inputs["question"][row])
        np.testing.assert_allclose(out["probabilities"], keras_probabilities[row], atol=1e-4)
        np.testing.assert_array_equal(out["mask"], keras_out["mask"][row])
        assert out["probabilities"].argmax() == saved["probabilities"].numpy()[row].argmax()


def test_int8_model_takes_int8_images(exported_tiny_run):
    vqa = LiteRTVQA(os.path.join(exported_tiny_run["export_dir"], "vqa_int8.tflite"))
    image = vqa.inputs["vqa"]["image"]
    assert image["dtype"] == np.int8
    # Calibrated on 0..255: whole pixel values quantize exactly.
    assert image["quantization"] == (1.0, -128)
    assert vqa.inputs["vqa"]["question"]["dtype"] == np.int32
    pixels = np.arange(256, dtype=np.float32)
    np.testing.assert_array_equal(dequantize(quantize(pixels, image), image), pixels)
    out = vqa.predict(np.full((vqa.image_size, vqa.image_size, 3), 128.0, np.float32),
                      np.ones(vqa.max_question_length, np.int32))
    assert out["probabilities"].dtype == np.float32
    assert abs(out["probabilities"].sum() - 1) < 0.02
    assert set(np.unique(out["mask"])) <= {0.0, 1.0} and out["mask"].sum() == 26  # HAN's k.


def test_litert_vqa_names_inputs_of_the_wrong_shape_or_type(exported_tiny_run):
    vqa = LiteRTVQA(os.path.join(exported_tiny_run["export_dir"], "vqa_float32.tflite"))
    size, length = vqa.image_size, vqa.max_question_length
    image, question = np.zeros((size, size, 3), np.float32), np.ones(length, np.int32)
    for bad, message in (
            # LiteRT: "XNNPack delegate failed to reshape runtime", from inside its kernels.
            ({"image": np.zeros((size + 1, size, 3))}, f"`image` must have shape \\({size}, "),
            ({"question": np.ones(length + 1, np.int32)}, "`question` must have shape"),
            # Truncated (2.9 read as 2) or fed to the embedding's gather as they were.
            ({"question": np.full(length, 2.9)}, "`question` must hold token ids, integers"),
            ({"question": -np.ones(length, np.int32)}, "integers >= 0")):
        with pytest.raises(ValueError, match=message):
            vqa.predict(**{"image": image, "question": question, **bad})
    # Answered before, without a word (or with a traceback from inside LiteRT):
    words = np.ones(length, np.int32)
    for bad, message in (
            ({"image": np.full((size, size, 3), np.nan, np.float32)}, "NaN or infinite"),
            ({"image": np.full((size, size, 3), 65535, np.uint16)},  # Clipped: white.
             "must hold pixel values 0..255 .*received values from 65535 to 65535"),
            ({"image": np.full((size, size, 3), -1.0, np.float32)}, "from -1 to -1"),
            # Wrapped to id 3 by the cast to int32.
            ({"question": np.full(length, 2**32 + 3, np.int64)}, "integers >= 0"),
            ({"question": np.concatenate([words[2:], [0, 0]])}, "must be left-padded"),
            ({"question": np.zeros(length, np.int32)}, "holds no word, only padding"),
            ({"question": np.full(length, 10**6, np.int32)}, "beyond this model's vocabulary")):
        with pytest.raises(ValueError, match=message):
            vqa.predict(**{"image": image, "question": question, **bad})
    int8 = LiteRTVQA(os.path.join(exported_tiny_run["export_dir"], "vqa_int8.tflite"))
    with pytest.raises(ValueError, match="`cells` are int8, as a quantized file's `encode`"):
        vqa.answer(int8.encode(image), question)  # Read as raw floats.
    with pytest.raises(ValueError, match="the model content is not a readable .tflite model"):
        LiteRTVQA(b"junk")
    # With or without the batch axis of 1.
    assert vqa.predict(image[None], question[None])["mask"].shape == (vqa.num_cells,)
    # Pixels scaled to 0..1 were answered, as a black image, without a word.
    photo = np.random.default_rng(0).uniform(0, 255, (size, size, 3)).astype(np.float32)
    with pytest.warns(UserWarning, match="`image` holds values in 0..1; the model reads "
                                         "pixel values 0..255"):
        vqa.predict(photo / 255, question)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vqa.predict(photo, question)  # 0..255, and the black image above: no warning.
        vqa.predict(image, question)


def _tf_only_saved_model(path):
    """A SavedModel using MatrixDeterminant, which has no TFLite builtin."""

    class WithDeterminant(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((1, 3, 3), tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.linalg.det(x)}

    module = WithDeterminant()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def test_tf_only_op_fails_with_its_name(tmp_path):
    path = _tf_only_saved_model(str(tmp_path / "det"))
    with pytest.raises(ExportError, match=r"MatrixDeterminant.*no TFLite builtin"):
        tflite.convert(path, ["serving_default"], "float32")


def test_checker_names_a_flex_op(tmp_path):
    path = _tf_only_saved_model(str(tmp_path / "det"))
    converter = tf.lite.TFLiteConverter.from_saved_model(path)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
    flatbuffer = converter.convert()
    assert tflite.op_names(flatbuffer)[1] == ["FlexMatrixDeterminant"]
    with pytest.raises(ExportError, match="Flex .*FlexMatrixDeterminant"):
        tflite.check_builtin_ops(flatbuffer)


def test_strip_tensor_names_keeps_signatures_outputs_and_alignment(tmp_path):
    from ai_edge_litert import schema_py_generated as schema

    class Affine(tf.Module):
        def __init__(self):
            self.w = tf.constant(np.random.default_rng(0).normal(size=(5, 7)), tf.float32)

        @tf.function(input_signature=[tf.TensorSpec((2, 5), tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.nn.relu(tf.matmul(x, self.w)), "z": tf.reduce_sum(x, -1)}

    module = Affine()
    tf.saved_model.save(module, str(tmp_path / "affine"), signatures={"apply": module.serve})
    raw = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "affine")).convert()
    stripped = tflite_edits.strip_tensor_names(raw)

    assert len(stripped) < len(raw)
    model = schema.Model.GetRootAsModel(stripped, 0)
    subgraph = model.Subgraphs(0)
    assert all(not subgraph.Tensors(i).Name() for i in range(subgraph.TensorsLength()))
    weights = [model.Buffers(i) for i in range(model.BuffersLength())
               if model.Buffers(i).DataLength()]
    assert weights and all(b._tab.Vector(b._tab.Offset(4)) % 16 == 0 for b in weights)
    x = np.random.default_rng(1).normal(size=(2, 5)).astype(np.float32)
    outputs = [Interpreter(model_content=content).get_signature_runner("apply")(x=x)
               for content in (raw, stripped)]
    assert set(outputs[1]) == {"y", "z"}
    for key in ("y", "z"):
        np.testing.assert_array_equal(outputs[0][key], outputs[1][key])


def test_failed_export_leaves_nothing(exported_tiny_run, tmp_path, monkeypatch):
    def failing_convert(saved_model_dir, signature_keys, quantization="float32", **kwargs):
        # Fails after the SavedModel and the run's files were written to the staging folder.
        raise ExportError("the model uses TensorFlow op(s) Fake that have no TFLite builtin")

    monkeypatch.setattr(tflite, "convert", failing_convert)
    output_dir = tmp_path / "out"
    with pytest.raises(ExportError, match="Fake"):
        exporter.export(exported_tiny_run["run_dir"], str(output_dir),
                        quantizations=("float32",), parity=False,
                        log=lambda message: None)
    assert os.listdir(tmp_path) == []  # No output folder, no temporary leftovers.

    # An existing export is kept whole when a replacement fails.
    output_dir.mkdir()
    folders.write_marker(str(output_dir), "export")
    (output_dir / "labels.json").write_text("old")
    with pytest.raises(ExportError, match="not empty"):
        exporter.export(exported_tiny_run["run_dir"], str(output_dir), parity=False,
                        log=lambda message: None)
    with pytest.raises(ExportError, match="Fake"):
        exporter.export(exported_tiny_run["run_dir"], str(output_dir),
                        quantizations=("float32",), parity=False, overwrite=True,
                        log=lambda message: None)
    assert os.listdir(tmp_path) == ["out"]
    assert sorted(os.listdir(output_dir)) == [folders.MARKER, "labels.json"]
    assert (output_dir / "labels.json").read_text() == "old"


def test_export_waits_for_a_trainer_in_the_run(exported_tiny_run, tmp_path, monkeypatch):
    # A trainer finishing a --resume of the run during the export left the export a
    # model.keras other than the one its .tflite files were made from.
    run_dir = exported_tiny_run["run_dir"]
    trainer = folders.FolderLock(run_dir)
    try:
        with pytest.raises(ExportError, match=f"the run folder '{run_dir}' is in use by "
                                              f"process {os.getpid()} .*wait for it"):
            exporter.export(run_dir, str(tmp_path / "out"), parity=False,
                            log=lambda message: None)
    finally:
        trainer.release()
    assert os.listdir(tmp_path) == []

    def failing_convert(saved_model_dir, signature_keys, quantization="float32", **kwargs):
        with pytest.raises(SystemExit, match="in use"):  # Held while the files are made,
            folders.FolderLock(run_dir)
        folders.FolderLock(run_dir, shared=True).release()  # but not against another export.
        raise ExportError("Fake")

    monkeypatch.setattr(tflite, "convert", failing_convert)
    with pytest.raises(ExportError, match="Fake"):
        exporter.export(run_dir, str(tmp_path / "out"), quantizations=("float32",),
                        parity=False, log=lambda message: None)
    folders.FolderLock(run_dir).release()  # And released after a failure.


def test_cli_errors(exported_tiny_run, tmp_path, capsys):
    from keras_adahan.export.__main__ import main

    empty_run = tmp_path / "run"
    empty_run.mkdir()
    with pytest.raises(SystemExit, match=r".*missing model.keras"):
        main([str(empty_run), "--output_dir", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match=r".*quantizations"):
        main([exported_tiny_run["run_dir"], "--output_dir", str(tmp_path / "out"),
              "--quantizations", "int4"])
    with pytest.raises(SystemExit, match=r".*not built"):
        main([exported_tiny_run["run_dir"], "--output_dir", str(tmp_path / "out"),
              "--data_dir", str(tmp_path / "no_data")])
    # Flags that would do nothing (float32 converted twice, 18 s lost).
    for flags, message in (
            (["--quantizations", "float32,int8,float32"], "names float32 more than once"),
            (["--quantizations", "float16", "--calibration_steps", "3"],
             "--calibration_steps calibrates the int8 model; --quantizations has no int8"),
            (["--skip_parity", "--max_parity_questions", "5"], "pass one of them")):
        with pytest.raises(SystemExit, match=message):
            main([exported_tiny_run["run_dir"], "--output_dir", str(tmp_path / "out"), *flags])
    assert sorted(os.listdir(tmp_path)) == ["run"]


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
def test_rolled_rnns_compute_what_the_unrolled_model_does(rnn):
    from keras_adahan.export import serving
    from keras_adahan.model import build_model
    from keras_adahan.presets import get_preset

    model = build_model(get_preset("default", image_size=64, rnn=rnn, vocab_size=9,
                                   num_answers=3, max_question_length=5))
    rng = np.random.default_rng(0)
    inputs = {"image": rng.uniform(0, 255, (2, 64, 64, 3)).astype("float32"),
              "question": rng.integers(0, 9, (2, 5)).astype("int32")}
    unrolled = model(inputs)["answer"]
    with serving.rolled_rnns(model):
        rolled = model(inputs)["answer"]
        graph = tf.function(model).get_concrete_function(
            {k: tf.TensorSpec(v.shape, v.dtype) for k, v in inputs.items()}).graph
        assert any(op.type == "While" for op in graph.get_operations())
    np.testing.assert_allclose(rolled, unrolled, atol=1e-5)
    rnn_layer = model.get_layer("answer_head").get_layer("question_rnn")
    assert "call" not in vars(rnn_layer)  # Back to the layer's own, unrolled call.


def test_report_warns_of_a_tflite_file_that_answers_below_keras():
    def figures(change, agreement):
        return {"answer_agreement": agreement, "accuracy": 0.5, "accuracy_change_points": change,
                "max_probability_difference": 0.1, "mask_agreement": 0.9}

    report = {
        "artifacts": {"saved_model": {"bytes": 600_000}, "vqa_float32.tflite": {"bytes": 100_000},
                      "vqa_float16.tflite": {"bytes": 60_000},
                      "vqa_dynamic_range.tflite": {"bytes": 40_000},
                      "vqa_int8.tflite": {"bytes": 30_000}},
        "parity": {"questions": 100, "split": "test", "keras_accuracy": 0.5, "artifacts": {
            "saved_model": figures(0.0, 1.0), "vqa_float32.tflite": figures(0.0, 1.0),
            "vqa_float16.tflite": figures(-0.5, 0.99),
            "vqa_dynamic_range.tflite": figures(-1.5, 0.97),
            "vqa_int8.tflite": figures(-9.67, 0.5117)}},
    }
    warnings = [line for line in exporter.format_report(report).splitlines()
                if line.startswith("Warning")]
    # Beyond 1 point below Keras; the smallest file within it is named instead.
    assert warnings == [
        "Warning: vqa_dynamic_range.tflite answers 1.50 points below Keras on 100 test "
        "questions (agrees on 97.00% of the answers): ship vqa_float16.tflite instead",
        "Warning: vqa_int8.tflite answers 9.67 points below Keras on 100 test questions "
        "(agrees on 51.17% of the answers): ship vqa_float16.tflite instead"]
    # One question in 100 is 1 point, whatever the float error of 100 * (0.49 - 0.5).
    report["parity"]["artifacts"]["vqa_int8.tflite"] = figures(100 * (0.49 - 0.5), 0.99)
    assert 100 * (0.49 - 0.5) < -1.0
    assert "ship vqa_int8.tflite instead" in exporter.format_report(report)
    assert "Warning: vqa_int8" not in exporter.format_report(report)
    for name in ("vqa_float32.tflite", "vqa_float16.tflite", "vqa_int8.tflite"):
        report["parity"]["artifacts"][name] = figures(-5.0, 0.9)
    assert "(agrees on 90.00% of the answers): no other .tflite file of this export stays " \
           "within a point of it" in exporter.format_report(report)
    del report["parity"]  # --skip_parity: nothing to warn of.
    assert "Warning" not in exporter.format_report(report)


def test_parity_matches_the_models_answers_to_the_datasets_by_name(exported_tiny_run):
    # A run of convert_reference numbers its answers in the reference's order: parity took
    # the model's answer ids for the dataset's, and its accuracies (and the int8 warning
    # built on them) were wrong.
    from keras_adahan.export import parity

    run = run_files.load_run(exported_tiny_run["run_dir"])
    dataset = data.prepare_dataset(run.config["train"]["dataset"],
                                   exported_tiny_run["data_dir"], build=False)
    layer = run.model.get_layer("answer_head").get_layer("answer_logits")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel[:, ::-1], bias[::-1]])  # Its answers numbered back to front.
    report = parity.check(run.model, exported_tiny_run["export_dir"], dataset, run.vocabulary,
                          run.answers[::-1], quantizations=())
    accuracy = run_files.read_json(os.path.join(exported_tiny_run["run_dir"], "metrics.json"))
    assert report["keras_accuracy"] == pytest.approx(accuracy["accuracy"])
