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


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_load_image_any_mode_gives_rgb(tmp_path, mode):
    rgb = np.zeros((10, 6, 3), np.uint8)
    rgb[:, :3] = (200, 40, 40)
    image = Image.fromarray(rgb).convert(mode)
    image.save(tmp_path / "photo.png")
    out = load_image(tmp_path / "photo.png", 4)
    assert out.shape == (4, 4, 3) and out.dtype == np.float32
    expected = resize_images(np.asarray(image.convert("RGB")), 4).numpy()
    np.testing.assert_allclose(out, expected, atol=1)


def test_load_image_transparent_pixels_become_white(tmp_path):
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    np.testing.assert_array_equal(load_image(tmp_path / "clear.png", 2), np.full((2, 2, 3), 255))


def test_load_image_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="missing.png' does not exist"):
        load_image(tmp_path / "missing.png", 4)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match="notes.png' is not a readable image"):
        load_image(tmp_path / "notes.png", 4)
