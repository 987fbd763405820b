"""Image preprocessing: the one place images are brought to the model's input size.

The training pipeline, evaluation and on-device prediction all call these, so a photo
given to `keras_adahan.predict` is converted exactly as the training images were.
"""

import contextlib
import os
import warnings

import numpy as np
import tensorflow as tf
from PIL import Image
from PIL import ImageOps
from PIL import UnidentifiedImageError


def resize_images(images, size):
    """Resizes RGB images to `size x size`, as float32 pixel values in [0, 255].

    Area resizing averages whole source pixels, so downscaling the 256x256 barn scenes by
    an integer factor loses no sprite to aliasing. Values are rounded to whole numbers.

    Args:
        images: uint8 or float tensor `(H, W, 3)` or `(B, H, W, 3)`.
        size: int. Side of the square output.
    """
    images = tf.cast(tf.convert_to_tensor(images), tf.float32)
    if images.shape[-3] == size and images.shape[-2] == size:
        return images
    # Rounded to whole pixel values, so the training pipeline can cache uint8 losslessly.
    return tf.round(tf.image.resize(images, (size, size), method="area"))


def load_image(path, size):
    """Reads an image file of any format, size, mode and bit depth for the model.

    Reads it with `read_rgb` (the rules every image a user gives goes through), then
    area-resizes it to `size x size` as the training images are (`resize_images`).

    Returns a float32 array `(size, size, 3)` of whole pixel values 0..255. Raises
    `ValueError` naming the file when it is missing, not an image, damaged or too large.
    """
    return resize_images(read_rgb(path, 2 * size), size).numpy()


def read_rgb(path, min_side):
    """An image file as a uint8 RGB array, read by the rules every user image follows.

    - EXIF orientation is applied (a phone photo is seen upright);
    - 16-bit and float images are scaled to 0..255, not clipped; transparent areas become
      white (the barn scenes' sky is light); palette, grayscale, CMYK ... become RGB;
    - an animated file is read from its first frame, with a warning;
    - a large image is reduced while it is read, by a whole factor that keeps its short side
      at least `min_side` (JPEG decodes at a fraction of its size; other formats are
      block-averaged right after decoding), so memory stays bounded; an image of more pixels
      than Pillow's decompression-bomb limit is refused.

    Raises `ValueError` naming the file when it is missing, not an image, damaged or too
    large.
    """
    with _opened(path) as image:
        return _to_rgb(image, min_side, path)


def check_image(path):
    """Reads an image file's header only (format and size, not the pixels), by the rules of
    `read_rgb`: raises its `ValueError` for a file that is missing, not an image or too
    large. A damaged image whose header reads passes; `read_rgb` finds it."""
    with _opened(path):  # Pillow reads the header when it opens the file.
        pass


@contextlib.contextmanager
def _opened(path):
    """The opened image; every error while it is open becomes one `ValueError` naming the
    file."""
    if os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path):
        # A FIFO or device would block or never end.
        raise ValueError(f"{str(path)!r} is not a regular file")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice it; both are refused here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                yield image
    except FileNotFoundError:
        raise ValueError(f"image file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"{str(path)!r} is a folder, not an image file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(
            f"{str(path)!r} has more pixels than the {Image.MAX_IMAGE_PIXELS:,} this tool "
            "decodes (a decompression bomb, or an image far larger than the model needs); "
            "resize it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"{str(path)!r} is not a readable image file ({error})") from None


def _to_rgb(image, min_side, path):
    """An opened image -> uint8 RGB array, its short side reduced towards `min_side`."""
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        warnings.warn(f"{str(path)!r} is animated ({frames} frames); reading its first frame",
                      ImageWarning, stacklevel=4)
    if image.format == "JPEG":
        image.draft("RGB", (min_side, min_side))  # Decodes at 1/2, 1/4 or 1/8 scale.
    mode = image.mode  # The range of its pixels, kept through the widening below.
    factor = min(image.size) // min_side
    if factor > 1:
        if mode.startswith("I;16"):
            image = image.convert("I")  # reduce() takes 32-bit pixels, not 16-bit ones.
        elif mode in ("P", "1"):  # Palette indices and bits are not values to average.
            image = image.convert("RGBA" if mode == "P" else "L")
        image = image.reduce(factor)  # Block averages: what area resizing does anyway.
    image = ImageOps.exif_transpose(image)  # After reducing: it copies the image.
    if image.mode.startswith("I") or image.mode == "F":
        return _scaled_gray(np.asarray(image), mode)
    if image.mode in ("RGBA", "LA", "PA", "P", "RGBa", "La") or "transparency" in image.info:
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return np.asarray(image.convert("RGB"))


def _scaled_gray(values, mode):
    """16-bit, 32-bit or float grayscale -> uint8 RGB, the full range onto 0..255."""
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        warnings.warn(f"{int((~finite).sum())} pixels are not finite numbers; read as black",
                      ImageWarning, stacklevel=5)
        values = np.where(finite, values, 0.0)
    low, high = values.min(initial=0), values.max(initial=0)
    if mode.startswith("I;16") or (mode == "I" and 255 < high <= 65535 and low >= 0):
        values = values / 257.0  # 0..65535 -> 0..255.
    elif mode == "F" and low >= 0 and high <= 1.0:
        values = values * 255.0  # 0..1 floats.
    elif low < 0 or high > 255:  # Another range: stretched onto 0..255, not clipped.
        values = (values - low) * (255.0 / max(high - low, 1e-12))
    gray = np.clip(np.round(values), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


class ImageWarning(UserWarning):
    """An image was read, but not all of it (e.g. the first frame of an animation)."""
