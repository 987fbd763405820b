"""barn_vqa: barn scenes with questions, answers and grounding boxes.

Nothing is downloaded: every image is drawn by `keras_adahan.scenes`, the one place scenes
are defined. See README.md beside this file for the configs, features and baselines.
"""

import dataclasses

from etils import epath
import tensorflow_datasets as tfds

# Absolute import: `tfds build datasets/barn_vqa` imports this file as
# `barn_vqa.barn_vqa_dataset_builder`, where a relative import could not reach it.
from keras_adahan import scenes

# The scene this dataset ports comes from the PyTorch-AdaHAN reference implementation.
_HOMEPAGE = "https://github.com/gnouhp/PyTorch-AdaHAN"


@dataclasses.dataclass
class BarnVqaConfig(tfds.core.BuilderConfig):
    """A TFDS builder config carrying the `scenes.SceneConfig` that renders it."""

    scene: scenes.SceneConfig | None = None


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for barn_vqa."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: configs classic, randomized, tiny, tiny_randomized.",
    }
    BUILDER_CONFIGS = [
        BarnVqaConfig(name=name, description=config.description, scene=config)
        for name, config in scenes.CONFIGS.items()
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
                    "label": tfds.features.ClassLabel(names=scenes.OBJECT_LABELS),
                    "box": tfds.features.BBoxFeature(),
                }),
            }),
            supervised_keys=None,
            homepage=_HOMEPAGE,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Everything is rendered.
        return {split: self._generate_examples(split) for split in scenes.SPLITS}

    def _generate_examples(self, split):
        for index, scene in scenes.render_split(self.builder_config.scene, split):
            key = f"{split}_{index:06d}"
            yield key, {
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
