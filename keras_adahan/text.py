"""Question tokenization: the one place that turns question text into token ids.

Training, evaluation, export and on-device inference all call `Vocabulary.encode`, so
a question is split and numbered the same way everywhere.
"""

import json
import re
import unicodedata

import numpy as np

PAD_ID = 0  # Left padding: the RNN reads the words last (`skip_padding` masks it).
OOV_ID = 1  # Any word not seen in the training questions.
_RESERVED = ("<pad>", "<oov>")
# A word is a run of letters, digits and combining marks of any script (Unicode categories
# L, N and M: "Café" is one word, not "caf"; the vowel signs of "कौन" belong to it, where
# Python's `\w` would split it into "क" and "न"); anything else separates words.
_WORD_CATEGORIES = "LNM"
_ASCII_WORD = re.compile(r"[a-z0-9]+")  # The same rule on ASCII, lower-cased.


def tokenize(text):
    """Splits a question into lower-case words, dropping punctuation.

    Example:
    >>> tokenize("What animal is near the Hay?")
    ['what', 'animal', 'is', 'near', 'the', 'hay']
    >>> tokenize("Où est la vache ?")
    ['où', 'est', 'la', 'vache']
    """
    if not isinstance(text, str):
        raise TypeError(f"`question` must be a string, received {type(text).__name__}")
    # NFC: "é" typed as e + accent is the same word as the one-letter "é".
    text = unicodedata.normalize("NFC", text).lower()
    if text.isascii():  # Most questions: a regex instead of a loop over characters.
        return _ASCII_WORD.findall(text)
    return "".join(c if unicodedata.category(c)[0] in _WORD_CATEGORIES else " "
                   for c in text).split()


class Vocabulary:
    """Maps question words to token ids: 0 is padding, 1 is out-of-vocabulary.

    Args:
        words: list of str. The known words, in id order starting at 2.

    Example:
    >>> vocab = Vocabulary.from_texts(["What animal is on the roof?"])
    >>> vocab.encode("what is on the hay", max_length=6).tolist()
    [0, 2, 4, 5, 6, 1]
    """

    def __init__(self, words):
        words = list(words)
        if len(set(words)) != len(words) or any(w in _RESERVED for w in words):
            raise ValueError("`words` must be unique and must not hold <pad> or <oov>")
        self.words = words
        self._ids = {w: i for i, w in enumerate(_RESERVED + tuple(words))}

    @classmethod
    def from_texts(cls, texts):
        """Builds a vocabulary of every word in `texts`, in order of first appearance."""
        seen = {}
        for text in texts:
            for word in tokenize(text):
                seen.setdefault(word, None)
        return cls(seen)

    @property
    def size(self):
        """Number of ids, padding and out-of-vocabulary included."""
        return len(self._ids)

    def unknown_words(self, text):
        """The words of `text` this vocabulary does not know (they encode as
        out-of-vocabulary), in order, without repeats."""
        return list(dict.fromkeys(w for w in tokenize(text) if w not in self._ids))

    def encode(self, text, max_length, require_known=False):
        """Returns the left-padded int32 ids of one question, shape `(max_length,)`.

        Raises `ValueError` for an empty question, a question longer than `max_length`
        words, or (with `require_known`) a question with no known word.
        """
        words = tokenize(text)
        if not words:
            raise ValueError(f"the question {text!r} has no words; ask a question in words")
        if len(words) > max_length:
            raise ValueError(
                f"the question {text!r} has {len(words)} words; this model reads at most "
                f"{max_length}"
            )
        ids = [self._ids.get(w, OOV_ID) for w in words]
        if require_known and all(i == OOV_ID for i in ids):
            raise ValueError(
                f"none of the words of the question {text!r} is known to this model; "
                f"known words: {', '.join(sorted(self.words))}"
            )
        return np.array([PAD_ID] * (max_length - len(ids)) + ids, dtype=np.int32)

    def encode_batch(self, texts, max_length):
        """Encodes several questions into an int32 array `(len(texts), max_length)`."""
        return np.stack([self.encode(t, max_length) for t in texts]).astype(np.int32)

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"words": self.words}, f, indent=1)

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f)["words"])
