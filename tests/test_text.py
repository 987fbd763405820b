import numpy as np
import pytest

from keras_adahan.text import OOV_ID, PAD_ID, Vocabulary, tokenize


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("What animal is near the Hay?") == ["what", "animal", "is", "near", "the", "hay"]
    assert tokenize("  How many pigs,  are there?! ") == ["how", "many", "pigs", "are", "there"]


def test_encode_left_pads_and_maps_unknown_words_to_oov():
    vocab = Vocabulary.from_texts(["What animal is on the roof?", "What is near the hay?"])
    ids = vocab.encode("what is on the moon", max_length=7)
    assert ids.dtype == np.int32
    words = ["what", "is", "on", "the"]
    expected = [PAD_ID, PAD_ID] + [vocab.encode(w, 1)[0] for w in words] + [OOV_ID]
    assert ids.tolist() == expected
    assert vocab.size == 2 + len({"what", "animal", "is", "on", "the", "roof", "near", "hay"})


def test_encode_batch_shape():
    vocab = Vocabulary.from_texts(["a b c"])
    assert vocab.encode_batch(["a", "b c", "c b a"], 4).shape == (3, 4)


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
    assert vocab.encode("what zebra", 4, require_known=True)[-1] == OOV_ID


def test_save_load_round_trip(tmp_path):
    vocab = Vocabulary.from_texts(["What animal is on the roof?"])
    vocab.save(tmp_path / "vocabulary.json")
    loaded = Vocabulary.load(tmp_path / "vocabulary.json")
    assert loaded.words == vocab.words
    np.testing.assert_array_equal(loaded.encode("the roof", 3), vocab.encode("the roof", 3))
