"""Converts a PyTorch-AdaHAN `state_dict` into a run folder of the `reference_exact` preset.

    python -m keras_adahan.convert_reference STATE_DICT.pt \\
        --vocabulary data/questions.txt --answers data/answers.txt --output_dir RUN

The run folder (`keras_adahan.run_files`) works with evaluate, export and predict, and its
model gives the reference's presences, kept cells and log-probabilities (the log-softmax of
its `answer` logits) on any image and question (tests/test_reference_exact.py).

STATE_DICT is what the reference's `AdaHAN` (models.py of gnouhp/PyTorch-AdaHAN) gives as
`model.state_dict()`; its main.py saves nothing, so add `torch.save(model.state_dict(),
"model.pt")` after its training loop.

Word and answer ids follow the reference's own numbering (main.py's `load_data`): it numbers
the words of its `data/questions.txt` from 0 in order of first appearance (lines stripped,
questions split at commas, words at spaces, case kept: "What" and "barn?" are words), and
the answers of `data/answers.txt` the same way (so not in vqa_generator.py's animal order:
with main.py's seed 123, cow, chicken, pig, sheep; computed, not stated there). Here
ids 0 and 1 are padding and out-of-vocabulary, so the reference's word i is id i + 2
(`vocabulary.json` lists the words in the reference's order; its "barn?" is "barn", as this
project's tokenizer drops punctuation and lower-cases); answer i is answer i
(`answers.json`). The reference has no out-of-vocabulary word; here it reads as a zero
embedding. `--vocabulary` and `--answers` also take JSON: a list in id order, or the
reference's `word2idx` / `answer2idx` dict.

torch is needed only to read the `.pt` file: `pip install torch` (here: torch==2.13.0) or
`pip install keras-adahan[convert]`. The conversion itself (`reference_weights`) works on
numpy arrays.
"""

import argparse
import os
import zipfile

import numpy as np

from keras_adahan import cli
from keras_adahan import folders
from keras_adahan import run_files
from keras_adahan import text

PRESET = "reference_exact"
# The reference's parameters: name -> shape, A = answers, V = words.
STATE_DICT_KEYS = (
    "encoder_cnn.conv1.weight", "encoder_cnn.conv1.bias",  # (8, 3, 5, 5), (8,)
    "encoder_cnn.conv2.weight", "encoder_cnn.conv2.bias",  # (8, 8, 5, 5), (8,)
    "encoder_cnn.conv3.weight", "encoder_cnn.conv3.bias",
    "encoder_rnn.embedding.weight",  # (V, 8)
    "encoder_rnn.gru.weight_ih_l0", "encoder_rnn.gru.weight_hh_l0",  # (24, 8): r, z, n
    "encoder_rnn.gru.bias_ih_l0", "encoder_rnn.gru.bias_hh_l0",  # (24,)
    "conv1by1.weight", "conv1by1.bias",  # (2, 8, 1, 1), (2,)
    "fc1.weight", "fc1.bias",  # (A, 1024), (A,)
)
RESERVED_IDS = 2  # Padding and out-of-vocabulary come before the reference's words.


def _conv(weight):
    return np.transpose(weight, (2, 3, 1, 0))  # (O, I, kh, kw) -> (kh, kw, I, O)


def _gates(weight):
    # PyTorch stacks the GRU's gates r, z, n; Keras' GRU layout is z, r, n.
    r, z, n = np.split(weight, 3, axis=0)
    return np.concatenate([z, r, n], axis=0)


def reference_weights(state_dict):
    """The reference's parameters as the weights of the `reference_exact` model's layers.

    Args:
        state_dict: dict of str -> array. A PyTorch-AdaHAN `state_dict` (tensors or numpy
            arrays), keys `STATE_DICT_KEYS`.

    Returns:
        A dict `(submodel, layer name) -> list of numpy arrays`, in each layer's
        `get_weights()` order.
    """
    missing = [key for key in STATE_DICT_KEYS if key not in state_dict]
    if missing:
        raise ValueError(f"`state_dict` is not PyTorch-AdaHAN's: it lacks {', '.join(missing)}")
    w = {key: np.asarray(state_dict[key], dtype="float32") for key in STATE_DICT_KEYS}
    for key, value in w.items():  # Before the transposes and splits, which fail obscurely.
        ndim = 4 if "conv" in key and key.endswith("weight") else (
            2 if "weight" in key else 1)
        if value.ndim != ndim or (".gru." in key and value.shape[0] % 3):
            raise ValueError(f"`state_dict`'s {key} has shape {value.shape}; PyTorch-AdaHAN's "
                             f"is {ndim}-D" + (", its 3 gates stacked" if ".gru." in key else ""))
    embedding = w["encoder_rnn.embedding.weight"]
    weights = {
        ("image_encoder", f"conv_{i}"): [_conv(w[f"encoder_cnn.conv{i}.weight"]),
                                          w[f"encoder_cnn.conv{i}.bias"]]
        for i in (1, 2, 3)
    }
    weights.update({
        # Rows 0 (padding, never read) and 1 (out-of-vocabulary) are zeros.
        ("answer_head", "word_embedding"): [np.concatenate(
            [np.zeros((RESERVED_IDS, embedding.shape[1]), "float32"), embedding])],
        ("answer_head", "question_rnn"): [
            _gates(w["encoder_rnn.gru.weight_ih_l0"]).T,
            _gates(w["encoder_rnn.gru.weight_hh_l0"]).T,
            np.stack([_gates(w["encoder_rnn.gru.bias_ih_l0"]),
                      _gates(w["encoder_rnn.gru.bias_hh_l0"])]),
        ],
        ("answer_head", "fusion_1"): [_conv(w["conv1by1.weight"]), w["conv1by1.bias"]],
        ("answer_head", "answer_logits"): [w["fc1.weight"].T, w["fc1.bias"]],
    })
    return weights


def load_reference_weights(model, state_dict):
    """Sets a `reference_exact` `VQAModel`'s weights from a PyTorch-AdaHAN `state_dict`.

    Raises a `ValueError` naming the first parameter whose shape does not fit the model.
    """
    for (submodel, name), arrays in reference_weights(state_dict).items():
        layer = model.get_layer(submodel).get_layer(name)
        expected = [tuple(v.shape) for v in layer.weights]
        if [a.shape for a in arrays] != expected:
            raise ValueError(
                f"`state_dict`'s weights for {name} have shapes {[a.shape for a in arrays]}; "
                f"the model's {submodel}/{name} takes {expected}")
        layer.set_weights(arrays)


def _read_json_ids(path, what):
    values = run_files.read_json(path)
    if isinstance(values, dict) and "words" in values and what == "words":
        values = values["words"]  # This project's vocabulary.json.
    if isinstance(values, dict) and "answers" in values and what == "answers":
        values = values["answers"]
    if isinstance(values, dict):  # The reference's word2idx / answer2idx.
        ids = list(values.values())
        if (not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
                or sorted(ids) != list(range(len(values)))):
            raise ValueError(f"{path!r}: the ids of the {what} must be 0..{len(values) - 1}")
        values = sorted(values, key=values.get)
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{path!r} must hold a list of {what} or a dict {what[:-1]} -> id")
    return values


def read_numbering(path, what):
    """The reference's `what` ("words" or "answers") in id order, and its longest question.

    `path`: the reference's `data/questions.txt` / `data/answers.txt` (each line an image's
    questions or answers, each followed by a comma; words split at spaces), numbered in order
    of first appearance as the reference does; or a JSON list / dict (see the module doc).
    Returns `(names, longest question in words or None)`.
    """
    if not os.path.isfile(path):
        flag = "--vocabulary" if what == "words" else "--answers"
        raise ValueError(f"{flag} {path!r} is not a file")
    if path.endswith(".json"):
        names, longest = _read_json_ids(path, what), None
    else:
        names, longest = {}, 0
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.readlines()
        except UnicodeDecodeError:
            flag = "--vocabulary" if what == "words" else "--answers"
            raise ValueError(f"{flag} {path!r} is not UTF-8 text (the reference's "
                             f"{'questions' if what == 'words' else 'answers'}.txt, or JSON)"
                             ) from None
        for line in lines:
            for item in line.rstrip().split(",")[:-1]:  # As main.py's load_data.
                tokens = item.split(" ") if what == "words" else [item]
                longest = max(longest, len(tokens))
                for token in tokens:
                    names.setdefault(token, len(names))
        names = list(names)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"{path!r} holds no {what}, or repeats some")
    return names, (longest if what == "words" else None)


def project_words(reference_words):
    """This project's tokens for the reference's words ("barn?" -> "barn"), same order."""
    words = []
    for word in reference_words:
        tokens = text.tokenize(word)
        if len(tokens) != 1:
            raise ValueError(f"the reference's word {word!r} is {len(tokens)} words to this "
                             f"project's tokenizer ({tokens}); it cannot be given one id")
        if tokens[0] in words:
            raise ValueError(f"the reference's words {reference_words[words.index(tokens[0])]!r}"
                             f" and {word!r} are both {tokens[0]!r} to this project's tokenizer")
        words.append(tokens[0])
    return words


def convert(state_dict, reference_words, answers, output_dir, variant="han",
            max_question_length=16, dataset="classic", data_dir=None, source=None,
            overwrite=False):
    """Writes a run folder of the `reference_exact` preset with the reference's weights.

    Args:
        state_dict: dict of str -> array. The reference's parameters.
        reference_words: list of str. The reference's words in id order.
        answers: list of str. The reference's answers in id order.
        output_dir: str. The run folder to write; must not exist or be empty (or, with
            `overwrite`, be a run folder of this project).
        variant: "han" or "adahan" (the reference's `adaptive=True`). Defaults to "han".
        max_question_length: int. Words the model reads at most. Defaults to 16.
        dataset: str. The dataset the run is evaluated and exported against by default (the
            barn_vqa `classic` config asks the reference's three questions).
        data_dir: str or `None`. Its TFDS folder.
        source: str or `None`. Where the weights came from, recorded in config.json.
        overwrite: bool. Replace a run folder of this project.

    Returns:
        The `VQAModel`.
    """
    from keras_adahan.model import VQAModel
    from keras_adahan.presets import get_preset

    if variant not in ("han", "adahan"):
        raise ValueError(f"`variant` must be 'han' or 'adahan', received {variant!r}")
    vocabulary = text.Vocabulary(project_words(reference_words))
    config = get_preset(PRESET, variant=variant, vocab_size=vocabulary.size,
                        num_answers=len(answers), max_question_length=max_question_length)
    model = VQAModel(config)
    load_reference_weights(model, state_dict)

    if os.path.lexists(output_dir) and not os.path.isdir(output_dir):
        raise cli.UserError(f"--output_dir {output_dir!r} is a file, not a folder")
    folders.check_creatable(output_dir, "--output_dir")
    folders.remove_stale_staging(output_dir)  # Puts back a folder a killed swap moved aside.
    if not folders.is_empty(output_dir):
        if not overwrite:
            raise cli.UserError(f"--output_dir {output_dir!r} is not empty; pass --overwrite "
                                "to replace it, or choose another --output_dir")
        folders.check_replaceable(output_dir, "run", "--output_dir",
                                  protect=[p for p in (source, data_dir) if p])
    # Not while a trainer writes there: it holds the same lock (run_files.prepare_run_dir).
    lock = folders.FolderLock(output_dir) if os.path.isdir(output_dir) else None
    try:
        with folders.staged(output_dir, "run") as staging:
            model.save(os.path.join(staging, run_files.MODEL))
            train = {"dataset": dataset, "data_dir": data_dir, "preset": PRESET,
                     "variant": variant, "converted_from": source}
            run_files.write_run_files(staging, config, train, vocabulary, answers)
    finally:
        if lock is not None:
            lock.release()
    return model


def read_state_dict(path):
    """The arrays of a `.pt` `state_dict` (torch needed), or of a `.npz`."""
    if not os.path.isfile(path):
        raise ValueError(f"STATE_DICT {path!r} is not a file")
    if path.endswith(".npz"):
        try:
            with np.load(path) as arrays:
                return dict(arrays)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(f"cannot read {path!r} as an .npz of arrays "
                             f"({str(error).split('.')[0]})") from None
    try:
        import torch
    except ImportError:
        raise cli.UserError("reading a PyTorch .pt file needs torch: pip install torch (or "
                            "keras-adahan[convert]); or save the state_dict as .npz") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # A pickle that is not a plain state_dict, a damaged file.
        reason = str(error).split(".")[0]  # Its first sentence; --debug does not reach here.
        raise ValueError(f"cannot read {path!r} as a PyTorch state_dict ({reason})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path!r} holds a {type(state).__name__}, not a state_dict "
                         "(save the model's `model.state_dict()`)")
    return {key: value.detach().cpu().numpy() for key, value in state.items()
            if hasattr(value, "detach")}


def main(argv=None):
    parser = cli.ArgumentParser(
        prog="python -m keras_adahan.convert_reference",
        description="Convert a PyTorch-AdaHAN state_dict into a run folder of the "
                    "reference_exact preset (evaluate, export and predict take it).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("state_dict", help="the reference's model.state_dict(), saved with "
                                           "torch.save (.pt; needs torch) or as .npz")
    parser.add_argument("--vocabulary", required=True,
                        help="the reference's data/questions.txt (words numbered as it does), "
                             "or JSON: its words in id order, or its word2idx")
    parser.add_argument("--answers", required=True,
                        help="the reference's data/answers.txt, or JSON: its answers in id "
                             "order, or its answer2idx")
    parser.add_argument("--output_dir", required=True, type=cli.folder_path,
                        help="the run folder to write")
    parser.add_argument("--variant", default="han", choices=("han", "adahan"),
                        help="han: top-2 cells; adahan: the reference's adaptive=True")
    parser.add_argument("--max_question_length", type=int, default=None,
                        help="words a question may have. Default: the longest question of "
                             "--vocabulary's questions.txt, at least 16")
    parser.add_argument("--dataset", default="classic", type=cli.dataset_name,
                        help="dataset that evaluate and export read by default (barn_vqa "
                             "classic asks the reference's three questions)")
    parser.add_argument("--data_dir", default=None, type=cli.folder_path,
                        help="its TFDS folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --output_dir if it is a run folder of keras-adahan")
    args = parser.parse_args(argv)
    try:
        words, longest = read_numbering(args.vocabulary, "words")
        answers, _ = read_numbering(args.answers, "answers")
        length = (args.max_question_length if args.max_question_length is not None
                  else max(16, longest or 0))
        if length < 1 or (longest and length < longest):
            raise ValueError(f"--max_question_length must be >= {longest or 1} (the longest "
                             f"question), received {length}")
        state_dict = read_state_dict(args.state_dict)
        convert(state_dict, words, answers, args.output_dir, variant=args.variant,
                max_question_length=length, dataset=args.dataset, data_dir=args.data_dir,
                source=os.path.abspath(args.state_dict), overwrite=args.overwrite)
    except ValueError as error:
        raise cli.UserError(str(error)) from None
    print(f"Wrote {args.output_dir}: {PRESET} ({args.variant}), {len(words)} words, "
          f"{len(answers)} answers")


if __name__ == "__main__":
    cli.run(main)
