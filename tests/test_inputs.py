"""Images and questions as users give them: phone photos, 16-bit scans, animations, huge
files, words the model never saw, letters outside ASCII (docs/reliability.md, 4 and 5)."""

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from keras_adahan import text
from keras_adahan.preprocessing import ImageWarning
from keras_adahan.preprocessing import load_image
from keras_adahan.preprocessing import read_rgb

ORIENTATION = 0x0112  # The EXIF tag.


def corner_image(width, height):
    """Black, with its top-left quarter (of the stored pixels) red."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[: height // 2, : width // 2] = (255, 0, 0)
    return Image.fromarray(pixels)


@pytest.mark.parametrize("orientation, red_corner", [
    (1, (0, 0)),  # As stored.
    (3, (1, 1)),  # Upside down: shown rotated 180 degrees.
    (6, (0, 1)),  # Shown rotated 90 degrees clockwise: top-left goes top-right.
    (8, (1, 0)),  # 90 degrees counter-clockwise: top-left goes bottom-left.
])
def test_exif_orientation_is_applied(tmp_path, orientation, red_corner):
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    path = tmp_path / "photo.jpg"
    corner_image(80, 40).save(path, exif=exif, quality=95)
    image = load_image(path, 8)
    quadrants = image.reshape(2, 4, 2, 4, 3)[..., 0].mean(axis=(1, 3))  # Red, per quadrant.
    assert np.unravel_index(quadrants.argmax(), (2, 2)) == red_corner
    assert quadrants.max() > 150 and np.sort(quadrants.ravel())[-2] < 30


def test_a_16_bit_image_reads_as_its_8_bit_version(tmp_path):
    values = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    eight = np.round(values / 257).astype(np.uint8)  # 65535 -> 255, by hand.
    Image.fromarray(eight).save(tmp_path / "eight.png")
    deep, shallow = load_image(tmp_path / "deep.png", 32), load_image(tmp_path / "eight.png", 32)
    np.testing.assert_array_equal(deep, shallow)
    assert deep.max() == 255 and deep.min() == 0  # Scaled, not clipped at 255.


def test_a_large_16_bit_image_is_reduced_as_its_8_bit_version(tmp_path):
    # Reduced while read (its short side is 4x what is asked); Pillow's reduce() refused
    # 16-bit pixels ("image has wrong mode"). Flat 4x4 blocks: the averages are exact.
    blocks = np.linspace(0, 255, 64 * 64).reshape(64, 64).round()
    eight = np.kron(blocks, np.ones((4, 4))).astype(np.uint8)
    Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    Image.fromarray(eight).save(tmp_path / "eight.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    deep = read_rgb(tmp_path / "deep.png", 64)
    assert deep.shape == (64, 64, 3)
    np.testing.assert_array_equal(deep, read_rgb(tmp_path / "eight.png", 64))
    np.testing.assert_array_equal(deep[..., 0], blocks)


def test_a_large_palette_or_1_bit_image_is_reduced_while_read_too(tmp_path):
    # It was read whole, then made RGBA twice over at full size.
    blocks = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    rgb = Image.fromarray(np.kron(blocks, np.ones((64, 64, 1), np.uint8)))
    rgb.quantize(colors=64).save(tmp_path / "palette.png")
    rgb.convert("1").save(tmp_path / "bits.png")
    for name, mode in (("palette.png", "P"), ("bits.png", "1")):
        assert Image.open(tmp_path / name).mode == mode
        read = read_rgb(tmp_path / name, 64)
        assert read.shape == (64, 64, 3), name
        as_rgb = tmp_path / f"{name}.rgb.png"
        Image.open(tmp_path / name).convert("RGB").save(as_rgb)
        np.testing.assert_array_equal(read, read_rgb(as_rgb, 64))  # The same picture.


def test_an_animated_image_is_read_from_its_first_frame_with_a_warning(tmp_path):
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((200, 0, 0), (0, 0, 200))]
    frames[0].save(tmp_path / "blink.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(ImageWarning, match="is animated \\(2 frames\\); reading its first frame"):
        image = load_image(tmp_path / "blink.gif", 8)
    assert image[..., 0].mean() > 150 and image[..., 2].mean() < 50  # The red frame.


def test_a_decompression_bomb_is_refused_with_a_clear_error(tmp_path, monkeypatch):
    Image.new("RGB", (500, 500)).save(tmp_path / "big.png")
    # Pillow's own limit, lowered so a small file stands in for a bomb. Past twice the
    # limit Pillow raises; between once and twice it only warns: both are refused.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    with pytest.raises(ValueError, match="has more pixels than the 100,000 this tool decodes"):
        load_image(tmp_path / "big.png", 32)
    Image.new("RGB", (400, 300)).save(tmp_path / "between.png")
    with pytest.raises(ValueError, match="more pixels than"):
        load_image(tmp_path / "between.png", 32)


def test_a_large_image_is_reduced_while_read_to_the_same_picture(tmp_path):
    # 8x8 blocks of one colour each, 1200 px a side: the reduced read must give the
    # blocks' colours, as area resizing the whole image does.
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(np.kron(blocks, np.ones((150, 150, 1), np.uint8))).save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png", 8), blocks.astype(np.float32))


def test_an_empty_or_truncated_file_names_itself(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.png' is not a readable image file"):
        load_image(tmp_path / "empty.png", 8)
    Image.new("RGB", (64, 64), (10, 20, 30)).save(tmp_path / "whole.png")
    content = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(content[: len(content) // 2])
    with pytest.raises(ValueError, match="cut.png' is not a readable image file"):
        load_image(tmp_path / "cut.png", 8)


# --- Questions -------------------------------------------------------------------------------


def test_letters_outside_ascii_are_letters():
    assert text.tokenize("Où est la VACHE, près du foin ?") == [
        "où", "est", "la", "vache", "près", "du", "foin"]
    # "é" typed as "e" + a combining accent is the same word as the single letter.
    assert text.tokenize("caf\u0065\u0301") == text.tokenize("caf\u00e9") == ["café"]
    assert text.tokenize("Wie viele Kühe? 3 Kühe.") == ["wie", "viele", "kühe", "3", "kühe"]
    # Combining vowel signs are part of their word: "who" and "ear" were both "क", "न".
    assert text.tokenize("कौन जानवर छत पर है?") == ["कौन", "जानवर", "छत", "पर", "है"]
    assert text.tokenize("कौन") != text.tokenize("कान")
    assert text.tokenize("สัตว์อะไร อยู่ที่นี่") == ["สัตว์อะไร", "อยู่ที่นี่"]  # Thai: no spaces between words.
    assert text.tokenize("hay_bale") == ["hay", "bale"]


def test_unknown_words_are_named():
    vocabulary = text.Vocabulary(["what", "animal", "is", "near", "the", "hay"])
    assert vocabulary.unknown_words("What animal is NOT near the hay, not the barn?") == [
        "not", "barn"]
    assert vocabulary.unknown_words("what animal is near the hay") == []


def test_predict_warns_of_unknown_words_and_strict_refuses_them(exported_tiny_run, tmp_path):
    from keras_adahan.predict import UnknownWordsWarning
    from keras_adahan.predict import predict

    model = os.path.join(exported_tiny_run["export_dir"], "vqa_float32.tflite")
    Image.new("RGB", (64, 64), (90, 160, 70)).save(tmp_path / "field.png")
    question = "What animal is NOT near the hay?"
    with pytest.warns(UnknownWordsWarning, match="read as unknown: not"):
        results, _ = predict(model, str(tmp_path / "field.png"), [question])
    assert len(results) == 1 and results[0]["question"] == question
    with pytest.raises(ValueError, match="has words this model does not know: not"):
        predict(model, str(tmp_path / "field.png"), [question], strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # A question in known words: no warning at all.
        predict(model, str(tmp_path / "field.png"), ["What animal is near the hay?"])
