"""Times building the barn_vqa dataset with TFDS: rendering, PNG encoding and writing.

By default builds the `classic` config's training split (10,000 images, byte-identical to
the default build's; validation and test shrink to one image each, since TFDS cannot
write an empty split) into a temporary data_dir, and prints seconds and images/s.
`--full` builds the whole config as `tfds build` does.

Example:

```
python benchmarks/build_dataset.py            # classic train split, 10,000 images
python benchmarks/build_dataset.py --full     # classic, all 12,000 images
python benchmarks/build_dataset.py --config randomized --full
```
"""

import dataclasses
import tempfile
import time

from keras_adahan import cli
from keras_adahan.datasets.barn_vqa import barn_vqa_dataset_builder, scene_config


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="classic", choices=sorted(scene_config.CONFIGS))
    parser.add_argument("--full", action="store_true", help="build every split")
    args = parser.parse_args(argv)

    scene = scene_config.get_config(args.config)
    if args.full:
        config = args.config
    else:
        # A config of its own name: TFDS refuses a custom config named like a built-in one.
        scene = dataclasses.replace(
            scene, name=f"{scene.name}_train_split", num_validation=1, num_test=1
        )
        config = barn_vqa_dataset_builder.BarnVqaConfig(
            name=scene.name, description=scene.description, scene=scene
        )
    num_images = sum(scene.num_examples(split) for split in scene_config.SPLITS)

    with tempfile.TemporaryDirectory() as data_dir:
        builder = barn_vqa_dataset_builder.Builder(config=config, data_dir=data_dir)
        start = time.perf_counter()
        builder.download_and_prepare()
        seconds = time.perf_counter() - start
        splits = {name: split.num_examples for name, split in builder.info.splits.items()}

    print(f"config: {scene.name} ({scene.image_size}x{scene.image_size}), splits: {splits}")
    print(f"built {num_images} images in {seconds:.1f} s: {num_images / seconds:.0f} images/s")


if __name__ == "__main__":
    cli.run(main)
