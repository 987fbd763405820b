"""Peak memory of reading a very large photo for the model (docs/reliability.md).

    python benchmarks/large_image_memory.py            # 9000 x 9000 PNG and JPEG

Draws the image in a child process, then reads it in a fresh process with
`keras_adahan.preprocessing.load_image` (what `python -m keras_adahan.predict` does) and
prints that process's peak resident memory, beside the same process's peak after importing
TensorFlow alone (the floor any of the tools starts from).
"""

import argparse
import os
import subprocess
import sys
import tempfile

from keras_adahan import cli

MEASURE = """
import resource, sys, time
import tensorflow  # noqa: F401
floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if sys.argv[1] != "-":
    from keras_adahan.preprocessing import load_image
    start = time.time()
    image = load_image(sys.argv[1], int(sys.argv[2]))
    assert image.shape == (int(sys.argv[2]),) * 2 + (3,)
print(floor, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""

DRAW = """
import sys
import numpy as np
from PIL import Image
side = int(sys.argv[1])
rng = np.random.default_rng(0)
tiles = rng.integers(0, 256, (side // 100, side // 100, 3), dtype=np.uint8)
image = Image.fromarray(np.kron(tiles, np.ones((100, 100, 1), np.uint8)))
image.save(sys.argv[2] + ".png")
image.save(sys.argv[2] + ".jpg", quality=90)
"""


def side_in_tiles(text):
    """argparse type of --side: the image is drawn in tiles of 100 x 100 pixels."""
    side = cli.positive_int(text)
    if side % 100:
        raise argparse.ArgumentTypeError(f"expected a multiple of 100, received {text!r}")
    return side


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=side_in_tiles, default=9000,
                        help="image side in pixels, a multiple of 100 (its tiles' side)")
    parser.add_argument("--image_size", type=cli.positive_int, default=128,
                        help="the model's input size")
    args = parser.parse_args(argv)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    with tempfile.TemporaryDirectory() as folder:
        stem = os.path.join(folder, "large")
        subprocess.run([sys.executable, "-c", DRAW, str(args.side), stem], check=True)
        print(f"{args.side} x {args.side} image, read for a {args.image_size} px model")
        for path in (stem + ".png", stem + ".jpg"):
            out = subprocess.run([sys.executable, "-c", MEASURE, path, str(args.image_size)],
                                 check=True, capture_output=True, text=True, env=env).stdout
            floor, peak = map(float, out.split())
            print(f"  {os.path.basename(path)} ({os.path.getsize(path) / 2**20:.1f} MiB file): "
                  f"peak {peak:.0f} MiB (TensorFlow alone: {floor:.0f} MiB)")


if __name__ == "__main__":
    cli.run(main)
