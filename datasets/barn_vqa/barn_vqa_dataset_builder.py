"""barn_vqa: barn scenes with questions, answers and grounding boxes.

Nothing is downloaded: every image is rendered by the modules beside this file, the one
place scenes are defined (`scene_config.py` the configs and questions, `layout.py` where
things go, `drawing.py` the sprites). See README.md here for the configs, features and
baselines.
"""

import dataclasses

from etils import epath
import tensorflow_datasets as tfds

# Relative: `tfds build datasets/barn_vqa` imports this file as
# `barn_vqa.barn_vqa_dataset_builder`, the installed package as
# `keras_adahan.datasets.barn_vqa.barn_vqa_dataset_builder`; only a relative import finds
# the scene modules beside it under both names.
from . import layout
from . import scene_config

# The scene this dataset ports comes from the PyTorch-AdaHAN reference implementation.
_HOMEPAGE = "https://github.com/gnouhp/PyTorch-AdaHAN"


@dataclasses.dataclass
class BarnVqaConfig(tfds.core.BuilderConfig):
    """A TFDS builder config carrying the `scene_config.SceneConfig` that renders it."""

    scene: scene_config.SceneConfig | None = None


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for barn_vqa."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": (
            "Initial release: configs classic, randomized, classic_open, randomized_open, "
            "tiny, tiny_randomized."
        ),
    }
    BUILDER_CONFIGS = [
        BarnVqaConfig(name=name, description=config.description, scene=config)
        for name, config in scene_config.CONFIGS.items()
    ]
    DEFAULT_CONFIG_NAME = "classic"

    # TFDS finds README.md, CITATIONS.bib, TAGS.txt, checksums.tsv and dummy_data/ by
    # rebuilding this folder's path from the module name (keras_adahan/datasets/barn_vqa/),
    # a path that does not exist in an editable install, where `keras_adahan.datasets`
    # maps to the top-level datasets/ folder. Point it at the folder of this file instead.
    pkg_dir_path = epath.Path(__file__).parent

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        scene = self.builder_config.scene
        size = scene.image_size
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(size, size, 3)),
                # "<split>_<index>", the example's key: unique across splits.
                "image_id": tfds.features.Text(),
                # Every image asks each question type once, in `scene.question_types` order.
                "questions": tfds.features.Sequence(
                    {
                        "question": tfds.features.Text(),
                        "answer": tfds.features.ClassLabel(names=scene.answers),
                        "type": tfds.features.ClassLabel(names=scene.question_types),
                        "box": tfds.features.BBoxFeature(),
                    },
                    length=scene.questions_per_image,
                ),
                "objects": tfds.features.Sequence({
                    "label": tfds.features.ClassLabel(names=scene_config.OBJECT_LABELS),
                    "box": tfds.features.BBoxFeature(),
                }),
            }),
            supervised_keys=None,
            homepage=_HOMEPAGE,
        )

    def _download_and_prepare(self, dl_manager, download_config):
        # Beam options or a runner (`tfds build --beam_pipeline_options=...`) switch
        # generation to Apache Beam; without them it stays a plain loop in this process.
        self._use_beam = (
            download_config.beam_options is not None or download_config.beam_runner is not None
        )
        super()._download_and_prepare(dl_manager, download_config)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Everything is rendered.
        splits = scene_config.SPLITS
        if getattr(self, "_use_beam", False):
            return {split: self._generate_examples_beam(split) for split in splits}
        return {split: self._generate_examples(split) for split in splits}

    def _generate_examples(self, split):
        scene = self.builder_config.scene
        for index in range(scene.num_examples(split)):
            yield make_example(index, scene, split)

    def _generate_examples_beam(self, split):
        """The same examples as `_generate_examples`, rendered by Beam workers."""
        beam = tfds.core.lazy_imports.apache_beam
        # Beam pickles functions by module name. `tfds build datasets/barn_vqa` imports
        # this file as `barn_vqa.barn_vqa_dataset_builder`, which workers cannot import;
        # the installed name they can.
        from keras_adahan.datasets.barn_vqa import barn_vqa_dataset_builder as installed

        # Imported as `barn_vqa...`, this module's scene config is an instance of its own
        # copy, `barn_vqa.scene_config.SceneConfig`, which workers cannot unpickle either
        # and the installed `render_scene` rejects: rebuild it as the installed class
        # (same fields, so the same images).
        scene = installed.scene_config.SceneConfig(
            **dataclasses.asdict(self.builder_config.scene)
        )
        return (
            beam.Create(range(scene.num_examples(split)))
            # Without it a runner may render a whole split in one worker.
            | beam.Reshuffle()
            | beam.Map(installed.make_example, scene, split)
        )


def make_example(index, config, split):
    """`(key, example)` of image `index` of `split` of `config` (a `SceneConfig`): the one
    place examples are made.

    The index comes first, as `beam.Map` passes the element first.
    """
    scene = layout.render_scene(config, split, index)
    key = f"{split}_{index:06d}"
    return key, {
        "image": scene.image,
        "image_id": key,
        "questions": [
            {
                "question": q.text,
                "answer": q.answer,
                "type": q.type,
                "box": tfds.features.BBox(*q.box),
            }
            for q in scene.questions
        ],
        "objects": [
            {"label": o.label, "box": tfds.features.BBox(*o.box)}
            for o in scene.objects
        ],
    }
