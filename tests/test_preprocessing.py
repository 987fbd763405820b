import numpy as np
import pytest
from PIL import Image

from keras_adahan.preprocessing import load_image, resize_images


def test_resize_images_averages_blocks_and_rounds():
    image = np.zeros((4, 4, 3), np.uint8)
    image[:2, :2] = 255  # top-left block white
    image[2:, 2:] = 3  # a block averaging to 3
    image[0, 2] = 1  # a block averaging to 0.25, rounded to 0
    out = resize_images(image, 2).numpy()
    assert out.dtype == np.float32 and out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out[..., 0], [[255, 0], [0, 3]])


def test_resize_images_keeps_batch_and_same_size():
    batch = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_images(batch, 8).numpy(), batch.astype(np.float32))
    assert resize_images(batch, 4).shape == (2, 4, 4, 3)


def _blocks(top_left, top_right, bottom_left, bottom_right):
    """A 4x4 array made of four 2x2 blocks, each given as its 4 values row by row."""
    out = np.zeros((4, 4) + np.shape(top_left[0]), np.uint8)
    for (y, x), block in zip([(0, 0), (0, 2), (2, 0), (2, 2)],
                             [top_left, top_right, bottom_left, bottom_right]):
        out[y:y + 2, x:x + 2] = np.reshape(block, (2, 2) + np.shape(block[0]))
    return out


def _palette_image():
    """A 4x4 palette image: index 0 red, 1 blue, 2 green."""
    indices = _blocks([0] * 4, [0, 0, 0, 1], [2] * 4, [1, 2, 2, 2])
    image = Image.frombytes("P", (4, 4), indices.tobytes())
    image.putpalette([255, 0, 0, 0, 0, 255, 0, 255, 0])
    return image


# Each mode's 4x4 image and its 2x2 area-resized RGB, averaged by hand (whole pixel values
# after rounding; no block averages to a half, where rounding could go either way).
MODE_CASES = {
    "RGB": (
        lambda: Image.fromarray(_blocks([(200, 40, 40)] * 4,
                                        [(0, 0, 0), (0, 0, 0), (100, 200, 40), (100, 200, 40)],
                                        [(10, 20, 30), (10, 20, 30), (10, 20, 30), (14, 24, 34)],
                                        [(255, 255, 255)] * 3 + [(251, 0, 3)])),
        # (10*3 + 14) / 4 = 11; (20*3 + 24) / 4 = 21; (255*3 + 251) / 4 = 254; 3*255/4 = 191.25
        [[(200, 40, 40), (50, 100, 20)], [(11, 21, 31), (254, 191, 192)]],
    ),
    "L": (
        lambda: Image.fromarray(_blocks([10] * 4, [0, 40, 80, 120], [255] * 4, [7, 7, 7, 8])),
        # Grey to RGB repeats the value: 60 = (0+40+80+120)/4; 7.25 -> 7.
        [[(10,) * 3, (60,) * 3], [(255,) * 3, (7,) * 3]],
    ),
    "P": (
        _palette_image,
        # Red; 3 red + 1 blue = (191.25, 0, 63.75); green; 1 blue + 3 green.
        [[(255, 0, 0), (191, 0, 64)], [(0, 255, 0), (0, 191, 64)]],
    ),
}


@pytest.mark.parametrize("mode", sorted(MODE_CASES))
def test_load_image_any_mode_gives_rgb(tmp_path, mode):
    make, expected = MODE_CASES[mode]
    image = make()
    assert image.mode == mode
    image.save(tmp_path / "photo.png")
    out = load_image(tmp_path / "photo.png", 2)
    assert out.shape == (2, 2, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array(expected, np.float32))
    # At its own size nothing is averaged: the file's pixels come back as they are.
    full = load_image(tmp_path / "photo.png", 4)
    if mode == "L":  # Each grey value in all three channels.
        np.testing.assert_array_equal(full, np.repeat(np.asarray(image)[..., None], 3, -1))
    elif mode == "P":  # Each index's palette colour.
        colours = np.array([(255, 0, 0), (0, 0, 255), (0, 255, 0)])
        np.testing.assert_array_equal(full, colours[np.asarray(image)])
    else:
        np.testing.assert_array_equal(full, np.asarray(image))


def test_load_image_transparent_pixels_become_white(tmp_path):
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    np.testing.assert_array_equal(load_image(tmp_path / "clear.png", 2), np.full((2, 2, 3), 255))
    # Per pixel, at the image's own size (no averaging): a fully transparent pixel is white
    # whatever colour it carries, a half-transparent red lies over white, an opaque pixel
    # keeps its colour.
    rgba = np.array([[(10, 200, 30, 0), (255, 0, 0, 128)],
                     [(10, 20, 30, 255), (0, 0, 255, 0)]], np.uint8)
    Image.fromarray(rgba).save(tmp_path / "mixed.png")
    assert Image.open(tmp_path / "mixed.png").mode == "RGBA"
    out = load_image(tmp_path / "mixed.png", 2)
    np.testing.assert_array_equal(out[0, 0], (255, 255, 255))
    np.testing.assert_allclose(out[0, 1], (255, 128, 128), atol=1)
    np.testing.assert_array_equal(out[1, 0], (10, 20, 30))
    np.testing.assert_array_equal(out[1, 1], (255, 255, 255))
    # Grey with alpha (LA): transparent is white, opaque keeps its grey.
    la = np.array([[(0, 0), (90, 255)], [(90, 255), (0, 0)]], np.uint8)
    Image.fromarray(la).save(tmp_path / "grey_alpha.png")
    assert Image.open(tmp_path / "grey_alpha.png").mode == "LA"
    np.testing.assert_array_equal(load_image(tmp_path / "grey_alpha.png", 2),
                                  [[(255,) * 3, (90,) * 3], [(90,) * 3, (255,) * 3]])
    # A palette with a transparent entry (PNG tRNS): that entry becomes white.
    palette = _palette_image()
    palette.save(tmp_path / "palette_clear.png", transparency=1)  # blue is see-through
    out = load_image(tmp_path / "palette_clear.png", 4)
    np.testing.assert_array_equal(out[1, 3], (255, 255, 255))  # blue: transparent
    np.testing.assert_array_equal(out[0, 0], (255, 0, 0))
    np.testing.assert_array_equal(out[2, 0], (0, 255, 0))


def test_load_image_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="missing.png' does not exist"):
        load_image(tmp_path / "missing.png", 4)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match="notes.png' is not a readable image"):
        load_image(tmp_path / "notes.png", 4)
