import numpy as np
import pytest

from keras_adahan.text import Vocabulary, tokenize


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("What animal is near the Hay?") == ["what", "animal", "is", "near", "the", "hay"]
    assert tokenize("  How many pigs,  are there?! ") == ["how", "many", "pigs", "are", "there"]


def test_encode_left_pads_and_maps_unknown_words_to_oov():
    vocab = Vocabulary.from_texts(["What animal is on the roof?", "What is near the hay?"])
    # Ids in order of first appearance, from 2: what 2, animal 3, is 4, on 5, the 6,
    # roof 7, near 8, hay 9; 0 pads on the left, 1 is any unknown word ("moon").
    assert vocab.words == ["what", "animal", "is", "on", "the", "roof", "near", "hay"]
    ids = vocab.encode("what is on the moon", max_length=7)
    assert ids.dtype == np.int32
    assert ids.tolist() == [0, 0, 2, 4, 5, 6, 1]
    assert vocab.encode("The HAY, near the roof?", max_length=5).tolist() == [6, 9, 8, 6, 7]
    assert vocab.size == 10  # 8 words, padding and out-of-vocabulary.


def test_encode_batch_shape():
    vocab = Vocabulary.from_texts(["a b c"])
    batch = vocab.encode_batch(["a", "b c", "c b a"], 4)
    assert batch.shape == (3, 4) and batch.dtype == np.int32
    assert batch.tolist() == [[0, 0, 0, 2], [0, 0, 3, 4], [0, 4, 3, 2]]


@pytest.mark.parametrize(
    "text, match",
    [("", "has no words"), ("?!", "has no words"), ("a b c d e f", "has 6 words; .* at most 5")],
)
def test_encode_rejects_bad_questions(text, match):
    vocab = Vocabulary.from_texts(["a b c"])
    with pytest.raises(ValueError, match=match):
        vocab.encode(text, max_length=5)


def test_encode_require_known_rejects_all_unknown_words():
    vocab = Vocabulary.from_texts(["what animal"])
    with pytest.raises(ValueError, match="none of the words .* 'zebra crossing'"):
        vocab.encode("zebra crossing", 4, require_known=True)
    assert vocab.encode("what zebra", 4, require_known=True).tolist() == [0, 0, 2, 1]


def test_save_load_round_trip(tmp_path):
    vocab = Vocabulary.from_texts(["What animal is on the roof?"])
    vocab.save(tmp_path / "vocabulary.json")
    loaded = Vocabulary.load(tmp_path / "vocabulary.json")
    assert loaded.words == vocab.words
    assert loaded.words == ["what", "animal", "is", "on", "the", "roof"]
    assert loaded.encode("the roof", 3).tolist() == [0, 6, 7]
