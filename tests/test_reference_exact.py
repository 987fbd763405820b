"""`reference_exact` against the PyTorch reference, without torch: the reference's weights,
inputs and outputs are in tests/fixtures/reference_outputs.npz (made by
tests/fixtures/make_reference_fixture.py from benchmarks/pytorch_reference.py)."""

import json
import os

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from keras_adahan import cli
from keras_adahan import convert_reference
from keras_adahan import folders
from keras_adahan import layers
from keras_adahan import run_files
from keras_adahan.export import serving
from keras_adahan.export import tflite
from keras_adahan.model import VQAModel
from keras_adahan.model import build_training_model
from keras_adahan.presets import get_preset

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "reference_outputs.npz")
WORDS = "What animal is near the front of barn? on top roof hay?".split()
ANSWERS = ["cow", "pig", "chicken", "sheep"]


@pytest.fixture(scope="module")
def fixture():
    with np.load(FIXTURE) as arrays:
        return dict(arrays)


def state_dict(fixture, draw):
    prefix = f"draw{draw}/"
    return {k[len(prefix):]: v for k, v in fixture.items() if k.startswith(prefix)}


def exact_model(variant="han", **overrides):
    sizes = dict(vocab_size=len(WORDS) + 2, num_answers=len(ANSWERS), max_question_length=16)
    config = get_preset("reference_exact", variant=variant, **{**sizes, **overrides})
    return VQAModel(config)


@pytest.mark.parametrize("variant", ["han", "adahan"])
def test_same_presences_masks_and_log_probs_as_the_reference(fixture, variant):
    model = exact_model(variant)
    for draw in np.unique(fixture["pair_draw"]):
        convert_reference.load_reference_weights(model, state_dict(fixture, draw))
        rows = fixture["pair_draw"] == draw
        outputs = model.predict_on_batch({
            "image": fixture["images"][fixture["pair_image"][rows]].astype("float32"),
            "question": fixture["question"][rows]})
        presence = fixture["presence"][rows]
        # Relative 1e-5, measured against each example's largest presence (cells near 0).
        np.testing.assert_allclose(outputs["presence"], presence, rtol=1e-5,
                                   atol=1e-5 * presence.max())
        mask = np.unpackbits(fixture[f"{variant}_mask"][rows], axis=1)
        # PyTorch's `topk` leaves the order of equal values unspecified (this model keeps
        # the lower cell index): where HAN's cut falls between cells of equal presence (the
        # structured images have such ties), any of them is the reference's choice.
        tied = np.zeros(len(mask), bool)
        if variant == "han":
            cut = -np.sort(-presence, axis=1)[:, 1:3]  # The 2nd and 3rd highest.
            tied = np.isclose(cut[:, 0], cut[:, 1], rtol=1e-6, atol=0)
            for row in np.flatnonzero(tied):
                np.testing.assert_array_equal(np.sort(presence[row][outputs["mask"][row] > 0]),
                                              np.sort(presence[row][mask[row] > 0]))
        assert tied.sum() <= len(mask) // 4
        np.testing.assert_array_equal(outputs["mask"][~tied], mask[~tied])
        log_probs = keras.ops.convert_to_numpy(keras.ops.log_softmax(outputs["answer"]))
        np.testing.assert_allclose(log_probs[~tied], fixture[f"{variant}_log_probs"][rows][~tied],
                                   rtol=1e-5, atol=1e-5)


def test_fixture_covers_lengths_and_borders(fixture):
    lengths = (fixture["question"] > 0).sum(1)
    assert set(lengths) == set(range(1, 17))  # 16: no padding at all.
    masks = np.unpackbits(fixture["han_mask"], axis=1).reshape(-1, 32, 32)
    border = masks[:, [0, -1]].sum() + masks[:, 1:-1, [0, -1]].sum()
    assert 0 < border < masks.sum()  # Kept cells on the grid's border and inside.


def test_masked_gru_is_keras_gru_over_the_words_only():
    rng = np.random.default_rng(0)
    words = rng.normal(size=(2, 5, 3)).astype("float32")
    gru = keras.layers.GRU(4, reset_after=True)
    expected = keras.ops.convert_to_numpy(gru(words[:, 2:]))  # The 3 words, no padding.
    masked = layers.MaskedGRU(4)
    masked.build(words.shape)
    masked.set_weights(gru.get_weights())  # The same weight layout.
    padded = words.copy()
    padded[:, :2] = 99.0  # Padding steps, whatever they hold, are skipped.
    mask = np.array([[0, 0, 1, 1, 1]] * 2, bool)
    np.testing.assert_allclose(masked(padded, mask=mask), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(masked(words[:, 2:]), expected, rtol=1e-6, atol=1e-6)
    restored = layers.MaskedGRU.from_config(masked.get_config())
    assert restored.units == 4
    with pytest.raises(ValueError, match=r"`units` must be a positive int, received 0"):
        layers.MaskedGRU(0)


def test_config_refuses_what_it_cannot_do_exactly():
    with pytest.raises(ValueError, match="`count_pool_padding` needs average pooling"):
        get_preset("reference_exact", fuse_conv_pool=True)
    with pytest.raises(ValueError, match="`skip_padding` needs rnn='gru'"):
        get_preset("reference_exact", rnn="lstm")


def test_conversion_names_what_does_not_fit(fixture):
    weights = state_dict(fixture, 0)
    with pytest.raises(ValueError, match="lacks fc1.bias"):
        convert_reference.reference_weights({k: v for k, v in weights.items() if k != "fc1.bias"})
    weights["fc1.weight"] = weights["fc1.weight"][:3]
    with pytest.raises(ValueError, match="answer_logits"):
        convert_reference.load_reference_weights(exact_model(), weights)
    weights["encoder_rnn.gru.weight_ih_l0"] = weights["encoder_rnn.gru.weight_ih_l0"][:23]
    with pytest.raises(ValueError, match=r"gru.weight_ih_l0 has shape \(23, 8\)"):
        convert_reference.reference_weights(weights)


def test_numbering_files_that_do_not_fit_are_named(tmp_path):
    word2idx = tmp_path / "word2idx.json"
    word2idx.write_text(json.dumps({"what": 1, "is": 0}))
    assert convert_reference.read_numbering(str(word2idx), "words") == (["is", "what"], None)
    word2idx.write_text(json.dumps({"what": "0", "is": 1}))  # Was a TypeError traceback.
    with pytest.raises(ValueError, match=r"word2idx.json': the ids of the words must be 0..1"):
        convert_reference.read_numbering(str(word2idx), "words")
    binary = tmp_path / "vocab.bin"
    binary.write_bytes(bytes(range(256)))  # Was "'utf-8' codec can't decode", no file named.
    with pytest.raises(ValueError, match=r"--vocabulary '.*vocab.bin' is not UTF-8 text"):
        convert_reference.read_numbering(str(binary), "words")


def test_convert_command_writes_a_usable_run(fixture, tmp_path, monkeypatch):
    weights = tmp_path / "state_dict.npz"
    np.savez(weights, **state_dict(fixture, 0))
    questions = tmp_path / "questions.txt"  # The reference's data files.
    questions.write_text("What animal is near the front of the barn?,What animal is on top of "
                         "the roof of the barn?,What animal is near the hay?,\n")
    answers = tmp_path / "answers.txt"
    answers.write_text(",".join(ANSWERS) + ",\n")
    run_dir = str(tmp_path / "run")
    argv = [str(weights), "--vocabulary", str(questions), "--answers", str(answers),
            "--output_dir", run_dir]
    convert_reference.main(argv)
    run = run_files.load_run(run_dir)
    assert run.answers == ANSWERS
    assert run.vocabulary.words == [w.lower().rstrip("?") for w in WORDS]
    assert run.model.config.max_question_length == 16
    # "What animal is near the hay?": the fixture's pair with the reference's ids 0 1 2 3 4 11.
    question = run.vocabulary.encode("What animal is near the hay?", 16)
    row = int(np.flatnonzero((fixture["question"] == question).all(1))[0])
    outputs = run.model.predict_on_batch({
        "image": fixture["images"][fixture["pair_image"][row]][None].astype("float32"),
        "question": question[None]})
    np.testing.assert_array_equal(outputs["mask"][0],
                                  np.unpackbits(fixture["han_mask"][row]))
    with pytest.raises(cli.UserError, match="is not empty"):
        convert_reference.main(argv)  # The run folder is never replaced unasked.
    lock = folders.FolderLock(run_dir)  # As a trainer holds it while it writes there.
    try:
        with pytest.raises(cli.UserError, match="is in use by process"):
            convert_reference.main(argv + ["--overwrite"])
    finally:
        lock.release()
    assert run_files.load_run(run_dir).answers == ANSWERS  # Untouched.
    convert_reference.main(argv + ["--overwrite"])
    # `--output_dir=~/ref` (the shell leaves that `~`) wrote a folder named `~` here.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    convert_reference.main(argv[:-2] + ["--output_dir=~/ref"])
    assert run_files.load_run(str(tmp_path / "home" / "ref")).answers == ANSWERS
    assert not (tmp_path / "~").exists()
    with pytest.raises(cli.UserError, match=r"--output_dir '.*answers.txt/run' cannot be "
                                            r"made: '.*answers.txt' is a file"):
        convert_reference.main(argv[:-1] + [str(answers / "run")])  # Was [Errno 20].
    with pytest.raises(cli.UserError, match="--dataset: .*'clasic'"):  # Was taken as it is.
        convert_reference.main(argv[:-1] + [str(tmp_path / "other"), "--dataset", "clasic"])
    assert not (tmp_path / "other").exists()
    with pytest.raises(cli.UserError, match="'barn' and 'Barn' are both 'barn'"):
        questions.write_text("the barn,the Barn,\n")
        convert_reference.main(argv[:-1] + [str(tmp_path / "other")])


def test_trains_saves_loads_and_exports_with_builtin_ops(tmp_path):
    # The preset's layers on a 32x32 image (a 4x4 grid), so it runs in seconds.
    model = exact_model(image_size=32, vocab_size=10, max_question_length=6)
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    questions = np.array([[0, 0, 0, 0, 0, 3], [0, 0, 4, 5, 6, 7], [2, 3, 4, 5, 6, 7],
                          [0, 0, 0, 9, 1, 2]], "int32")
    training = build_training_model(model, questions_per_image=1)
    training.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = model.get_weights()
    training.fit({"image": images, "questions": questions[:, None]}, np.zeros((4, 1)),
                 epochs=1, verbose=0)
    assert not np.allclose(before[0], model.get_weights()[0])
    inputs = {"image": images, "question": questions}
    expected = model.predict_on_batch(inputs)

    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.config == model.config
    for key, value in loaded.predict_on_batch(inputs).items():
        np.testing.assert_allclose(value, expected[key], rtol=1e-6, atol=1e-6)

    saved_model = str(tmp_path / "saved_model")
    with serving.rolled_rnns(loaded):
        serving.serving_archive(loaded, batch_size=1).write_out(saved_model, verbose=False)
    flatbuffer = tflite.convert(saved_model, serving.SIGNATURES, "float32")
    tflite.check_builtin_ops(flatbuffer)
    interpreter = Interpreter(model_content=flatbuffer)
    vqa = interpreter.get_signature_runner("vqa")
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(expected["answer"]))
    for index in range(len(images)):
        out = vqa(image=images[index:index + 1], question=questions[index:index + 1])
        np.testing.assert_allclose(out["probabilities"][0], probabilities[index], atol=1e-5)
        np.testing.assert_array_equal(out["mask"][0], expected["mask"][index])
