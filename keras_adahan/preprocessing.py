"""Image preprocessing: the one place images are brought to the model's input size.

The training pipeline, evaluation and on-device prediction all call these, so a photo
given to `keras_adahan.predict` is converted exactly as the training images were.
"""

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError


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
    """Reads an image file of any size and mode (RGBA, grayscale, palette) for the model.

    Returns a float32 array `(size, size, 3)`. Raises `ValueError` naming the file when it
    is missing or not an image.
    """
    try:
        with Image.open(path) as image:
            # Transparent areas become white, as the barn scenes' sky is light.
            if image.mode in ("RGBA", "LA", "P"):
                image = image.convert("RGBA")
                background = Image.new("RGBA", image.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, image)
            rgb = np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise ValueError(f"image file {str(path)!r} does not exist") from None
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{str(path)!r} is not a readable image file ({error})") from None
    return resize_images(rgb, size).numpy()
