"""A user's VQA folder: reading and checking its JSON Lines files.

    PATH/train.jsonl, PATH/test.jsonl, optional PATH/validation.jsonl
    one JSON object per line:
      {"image": "<path relative to PATH>", "question": "...", "answer": "...",
       "type": "..." (optional), "box": [ymin, xmin, ymax, xmax] in 0..1 (optional)}

Every line is checked before anything is built; an error names the file and the line.
"""

import codecs
import dataclasses
import hashlib
import io
import json
import os
import unicodedata
import warnings
import zlib

SPLIT_FILES = {"train": "train.jsonl", "validation": "validation.jsonl", "test": "test.jsonl"}
# Without validation.jsonl, images whose path hashes into this share of 100 are held out of
# train: the same image never lands in two splits, and the choice does not depend on order.
VALIDATION_PERCENT = 10
NO_TYPE = "all"  # The question type of lines without "type".


class FolderError(ValueError):
    """The folder does not follow the format; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class Line:
    image: str  # Relative to the folder, as written.
    question: str
    answer: str
    type: str
    box: tuple  # (ymin, xmin, ymax, xmax) in 0..1, or (0, 0, 0, 0) when absent.
    where: str  # "train.jsonl:12", for messages.


def read_folder(path):
    """`{split: [Line]}` of a folder, checked: required files, fields, boxes, images that
    exist, answers of validation/test seen in train, no image in two splits, no empty split.

    Raises:
        FolderError: naming the file and line.
    """
    if os.path.isfile(path):
        raise FolderError(f"{path!r} is a file, not a dataset folder")
    if not os.path.isdir(path):
        raise FolderError(f"dataset folder {path!r} does not exist")
    splits = {}
    for split, name in SPLIT_FILES.items():
        file = os.path.join(path, name)
        if os.path.exists(file):
            splits[split] = _read_lines(path, file)
        elif split != "validation":
            raise FolderError(f"{file!r} is missing: a dataset folder holds train.jsonl and "
                              "test.jsonl (and optionally validation.jsonl)")
    held_out_validation = "validation" not in splits
    if held_out_validation:
        held_out = [line for line in splits["train"] if _held_out(line.image)]
        splits["train"] = [line for line in splits["train"] if not _held_out(line.image)]
        splits["validation"] = held_out
    for split, lines in splits.items():
        if not lines:
            extra = (f" (no validation.jsonl: {VALIDATION_PERCENT}% of the train images are "
                     "held out by their path, and none was)" if split == "validation" else "")
            raise FolderError(f"the {split} split of {path!r} has no questions{extra}")
    seen = {}
    for split, lines in splits.items():
        for line in lines:
            other = seen.setdefault(line.image, split)
            if other != split:
                raise FolderError(f"{line.where}: image {line.image!r} is in the {other} split "
                                  f"too; an image belongs to one split")
    answers = {line.answer for line in splits["train"]}
    for split in ("validation", "test"):
        for line in splits[split]:
            if line.answer not in answers and split == "validation" and held_out_validation:
                raise FolderError(
                    f"{line.where}: the answer {line.answer!r} is given only for images held "
                    f"out for validation (no validation.jsonl: {VALIDATION_PERCENT}% of the "
                    "train images are, by their path), so no model trained on the rest can "
                    "give it; add training lines with it, or write validation.jsonl")
            if line.answer not in answers:
                raise FolderError(f"{line.where}: the answer {line.answer!r} never occurs in "
                                  "train.jsonl, so no model trained on it can give it")
    spellings = {}
    for answer in sorted(answers):
        spellings.setdefault(_spelling_key(answer), []).append(answer)
    alike = [names for names in spellings.values() if len(names) > 1]
    if alike:
        warnings.warn(f"{os.path.join(path, SPLIT_FILES['train'])}: answers that differ only "
                      f"in case, spaces or Unicode form are different answers to the model: "
                      f"{'; '.join(' and '.join(map(repr, names)) for names in alike[:4])}",
                      stacklevel=2)
    return splits


def _spelling_key(answer):
    """What two spellings of one answer share: "Café", "cafe\u0301" and "café  " alike."""
    return " ".join(unicodedata.normalize("NFC", answer).casefold().split())


def _held_out(image):
    return zlib.crc32(image.encode("utf-8")) % 100 < VALIDATION_PERCENT


def _read_lines(folder, file):
    lines = []
    name = os.path.basename(file)
    if not os.path.isfile(file):
        raise FolderError(f"{file!r} is not a file: expected JSON Lines")
    with open(file, "rb") as f:
        raw = f.read()
    raw = raw.removeprefix(codecs.BOM_UTF8)  # Notepad and Excel begin the file with one.
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:  # Name the line, as for any other bad line.
        line = raw[:error.start].count(b"\n") + 1
        raise FolderError(f"{os.path.join(folder, name)}:{line}: not UTF-8 text (byte "
                          f"{raw[error.start]:#x})") from None
    # Lines as text mode splits them (\n, \r\n or \r; not str.splitlines' U+2028 etc.,
    # which JSON strings may hold).
    for number, line in enumerate(io.StringIO(text, newline=None), 1):
        where = f"{name}:{number}"
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise FolderError(f"{os.path.join(folder, where)}: not a JSON object "
                              f"({error.msg})") from None
        except (ValueError, RecursionError) as error:  # A 5,000-digit number, deep nesting.
            raise FolderError(f"{os.path.join(folder, where)}: not a JSON line this format "
                              f"reads ({str(error).splitlines()[0][:80] or 'nested too deep'})"
                              ) from None
        lines.append(_line(folder, record, os.path.join(folder, where)))
    return lines


def _line(folder, record, where):
    if not isinstance(record, dict):
        raise FolderError(f"{where}: expected a JSON object, received {type(record).__name__}")
    for key in ("image", "question", "answer"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise FolderError(f"{where}: \"{key}\" must be a non-empty string, received "
                              f"{record.get(key)!r}")
    from keras_adahan.text import tokenize

    if not tokenize(record["question"]):
        raise FolderError(f"{where}: the question {record['question']!r} has no words")
    unknown = sorted(set(record) - {"image", "question", "answer", "type", "box"})
    if unknown:
        raise FolderError(f"{where}: unknown field(s) {unknown}; a line holds image, "
                          "question, answer and optionally type and box")
    kind = record.get("type", NO_TYPE)
    if not isinstance(kind, str) or not kind.strip():
        raise FolderError(f"{where}: \"type\" must be a non-empty string, received {kind!r}")
    box = record.get("box", (0.0, 0.0, 0.0, 0.0))
    if (not isinstance(box, (list, tuple)) or len(box) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
            or not all(0.0 <= v <= 1.0 for v in box) or box[0] > box[2] or box[1] > box[3]):
        raise FolderError(f"{where}: \"box\" must be [ymin, xmin, ymax, xmax] in 0..1 with "
                          f"ymin <= ymax and xmin <= xmax, received {box!r}")
    image = os.path.normpath(record["image"])
    if os.path.isabs(image) or image == ".." or image.startswith(".." + os.sep):
        raise FolderError(f"{where}: \"image\" must be a path inside the folder, received "
                          f"{record['image']!r}")
    if not os.path.isfile(os.path.join(folder, image)):
        raise FolderError(f"{where}: image {record['image']!r} does not exist in {folder!r}")
    return Line(image, record["question"], record["answer"].strip(), kind.strip(),
                tuple(float(v) for v in box), where)


def training_digest(path):
    """A hash of what the folder's training split holds: each line's image, question,
    answer, type and box, and each of its images' size; not where the folder is or its
    files' times, which a copy changes."""
    lines = read_folder(path)["train"]
    digest = hashlib.sha256()
    for line in lines:
        digest.update(repr((line.image, line.question, line.answer, line.type,
                            line.box)).encode("utf-8"))
    for image in sorted({line.image for line in lines}):
        digest.update(f"{image}\0{os.path.getsize(os.path.join(path, image))}\0".encode())
    return digest.hexdigest()[:16]


def fingerprint(path):
    """A hash of the folder's files (the JSON Lines and each image's size and time): the
    prepared dataset is rebuilt when it changes."""
    splits = read_folder(path)  # Checked first: its errors name the file and line.
    digest = hashlib.sha256(os.path.abspath(path).encode("utf-8"))
    for name in sorted(SPLIT_FILES.values()):
        file = os.path.join(path, name)
        if os.path.exists(file):
            with open(file, "rb") as f:
                digest.update(name.encode() + f.read())
    images = sorted({line.image for lines in splits.values() for line in lines})
    for image in images:
        stat = os.stat(os.path.join(path, image))
        digest.update(f"{image}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode("utf-8"))
    return digest.hexdigest()[:16]
