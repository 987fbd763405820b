"""Times generating barn_vqa through Apache Beam (DirectRunner) against the plain loop.

Builds the same images (by default the first 2,000 training images of the `classic`
config; validation and test shrink to one image each, as in build_dataset.py) into a fresh
temporary data_dir for each setting, and prints seconds, images/s and images per
CPU-second (this process and Beam's worker processes):

- `plain`: no Beam options, the default `download_and_prepare` loop (one process);
- `in_memory xN`: DirectRunner, `direct_running_mode=in_memory`, N worker threads
  (`multi_threading xN` also runs);
- `multi_processing xN`: DirectRunner, `direct_running_mode=multi_processing`, N worker
  processes (each imports TensorFlow and TFDS first: a fixed start-up cost).

Example:

```
python benchmarks/beam_generation.py                      # classic, 2,000 images
python benchmarks/beam_generation.py --num_images 500 --config randomized
python benchmarks/beam_generation.py --settings plain multi_processing:2
```
"""

import argparse
import dataclasses
import resource
import tempfile
import time

from keras_adahan import cli
from keras_adahan.datasets.barn_vqa import barn_vqa_dataset_builder, scene_config

MODES = ("in_memory", "multi_threading", "multi_processing")  # DirectRunner's.
SETTINGS = ("plain", "in_memory:1", "in_memory:2", "multi_processing:1", "multi_processing:2")


def cpu_seconds():
    """CPU time of this process and of its finished child processes (Beam's workers)."""
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def setting_name(text):
    """`plain` or `MODE:WORKERS` (argparse type): checked before the first build runs."""
    mode, _, workers = text.partition(":")
    if text == "plain" or (mode in MODES and workers.isdigit()
                           and int(workers) >= 1):
        return text
    raise argparse.ArgumentTypeError(f"expected plain or MODE:N, MODE one of "
                                     f"{', '.join(MODES)} and N workers >= 1, received "
                                     f"{text!r}")


def build(config, setting):
    """Builds `config` into a temporary folder with `setting`; returns (wall, CPU) seconds."""
    import apache_beam as beam
    import tensorflow_datasets as tfds

    download_config = tfds.download.DownloadConfig()
    if setting != "plain":
        mode, workers = setting.split(":")
        # What `tfds build --beam_pipeline_options=direct_num_workers=N,...` passes.
        download_config.beam_options = beam.options.pipeline_options.PipelineOptions(
            flags=[f"--direct_num_workers={workers}", f"--direct_running_mode={mode}"]
        )
    with tempfile.TemporaryDirectory() as data_dir:
        builder = barn_vqa_dataset_builder.Builder(config=config, data_dir=data_dir)
        start, start_cpu = time.perf_counter(), cpu_seconds()
        builder.download_and_prepare(download_config=download_config)
        return time.perf_counter() - start, cpu_seconds() - start_cpu


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="classic", choices=sorted(scene_config.CONFIGS))
    parser.add_argument("--num_images", type=cli.positive_int, default=2000,
                        help="training images")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), type=setting_name,
                        help=f"plain or MODE:WORKERS, MODE one of {', '.join(MODES)} "
                             f"(default: {' '.join(SETTINGS)})")
    args = parser.parse_args(argv)

    scene = scene_config.get_config(args.config)
    # A config of its own name: TFDS refuses a custom config named like a built-in one.
    scene = dataclasses.replace(scene, name=f"{scene.name}_beam_benchmark",
                                num_train=args.num_images, num_validation=1, num_test=1)
    config = barn_vqa_dataset_builder.BarnVqaConfig(
        name=scene.name, description=scene.description, scene=scene)
    num_images = sum(scene.num_examples(split) for split in scene_config.SPLITS)

    results = [(setting, *build(config, setting)) for setting in args.settings]
    print(f"config: {args.config} ({scene.image_size}x{scene.image_size}), "
          f"{num_images} images per build")
    # Images per CPU-second shows each setting's overhead even on a busy machine, where
    # wall-clock images/s depends on what else runs.
    for setting, seconds, cpu in results:
        print(f"  {setting:20s} {seconds:7.1f} s  {num_images / seconds:7.0f} images/s  "
              f"({cpu:6.1f} CPU-s, {num_images / cpu:5.0f} images per CPU-second)")


if __name__ == "__main__":
    cli.run(main)
