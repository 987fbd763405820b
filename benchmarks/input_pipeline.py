"""Input pipeline at CLEVR's scale: peak memory and images/s, against the model's images/s.

    python benchmarks/input_pipeline.py                       # 70,000 images, 10 questions each
    python benchmarks/input_pipeline.py --images 5000         # a quicker look

Draws a folder dataset of CLEVR-sized (480 x 320) JPEG renders of a few shapes, 10
questions each, prepares it once through the folder builder (`--dataset folder:PATH`),
then times the training pipeline (`keras_adahan.data.training_batches`) over the whole
training split twice: the first pass decodes, resizes and tokenizes (and fills the
in-memory cache of uint8 images at the model's size), the second reads the cache. It
prints images/s of both passes and this process's peak resident memory, beside the
training images/s of the model itself on cached batches (`train_throughput.py`'s
measurement), so the input's margin over the model is read in one run.
"""

import json
import os
import random
import resource
import sys
import time

from PIL import Image
from PIL import ImageDraw

from keras_adahan import cli

COLORS = ("red", "blue", "green", "yellow", "gray", "cyan", "purple", "brown")
SHAPES = ("cube", "sphere", "cylinder")


def draw_folder(folder, images, seed=0):
    rng = random.Random(seed)
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    files = {split: open(os.path.join(folder, f"{split}.jsonl"), "w")
             for split in ("train", "validation", "test")}
    for index in range(images):
        split = "train" if index % 20 < 18 else ("validation", "test")[index % 2]
        image = Image.new("RGB", (480, 320), (120, 120, 125))
        pen = ImageDraw.Draw(image)
        objects = [(rng.choice(COLORS), rng.choice(SHAPES)) for _ in range(rng.randint(3, 8))]
        for colour, shape in objects:
            x, y, r = rng.randint(40, 440), rng.randint(60, 280), rng.randint(12, 30)
            (pen.ellipse if shape == "sphere" else pen.rectangle)(
                (x - r, y - r, x + r, y + r), fill=colour)
        name = f"images/{index:06d}.jpg"
        image.save(os.path.join(folder, name), quality=90)
        for q in range(10):
            colour, shape = objects[q % len(objects)]
            count = sum(s == shape for _, s in objects)
            files[split].write(json.dumps({
                "image": name, "question": f"How many {shape}s are there like the {colour} "
                                           f"{shape} number {q}?", "answer": str(count)}) + "\n")
    for f in files.values():
        f.close()


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=cli.positive_int, default=70000)
    parser.add_argument("--folder", default="/tmp/keras_adahan_pipeline_folder")
    parser.add_argument("--data_dir", default="/tmp/keras_adahan_pipeline_tfds")
    parser.add_argument("--image_size", type=cli.positive_int, default=128)
    parser.add_argument("--batch_size", type=cli.positive_int, default=32)
    args = parser.parse_args(argv)

    from keras_adahan import data

    if not os.path.exists(os.path.join(args.folder, "test.jsonl")):
        if os.path.isdir(args.folder) and os.listdir(args.folder):  # Not ours to overwrite.
            parser.error(f"--folder {args.folder!r} holds other files; give a new or empty "
                         "folder to draw into, or one this script drew")
        start = time.time()
        draw_folder(args.folder, args.images)
        print(f"drew {args.images} images in {time.time() - start:.0f} s", flush=True)
    start = time.time()
    dataset = data.prepare_dataset(f"folder:{args.folder}", args.data_dir)
    print(f"prepared (or found) the TFDS dataset in {time.time() - start:.0f} s", flush=True)
    vocabulary = data.build_vocabulary(dataset)
    batches = data.training_batches(dataset, "train", vocabulary, args.image_size, 48,
                                    args.batch_size, shuffle=True)
    images = dataset.num_examples("train")
    for name in ("first pass (decode, resize, tokenize, cache)", "second pass (from cache)"):
        start = time.time()
        for _ in batches:
            pass
        seconds = time.time() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"{name}: {images} images in {seconds:.1f} s = {images / seconds:,.0f} "
              f"images/s; peak memory so far {peak:.2f} GiB", flush=True)
    print(f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    cli.run(main)
