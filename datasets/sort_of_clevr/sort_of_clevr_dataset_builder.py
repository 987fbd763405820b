"""sort_of_clevr: Santoro et al.'s relational benchmark, drawn by `scenes.py` beside this file.

Nothing is downloaded. See README.md here for the configs, features and splits.
"""

from etils import epath
import tensorflow_datasets as tfds

# Relative, as in barn_vqa: found under both `tfds build datasets/sort_of_clevr` and the
# installed package name.
from . import scenes

_HOMEPAGE = "https://arxiv.org/abs/1706.01427"


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for sort_of_clevr."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: configs default (75x75), large (128x128), tiny."}
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name=name, description=config.description)
        for name, config in scenes.CONFIGS.items()
    ]
    DEFAULT_CONFIG_NAME = "default"

    # As in barn_vqa: TFDS finds README.md and dummy_data/ beside this file, also in an
    # editable install where keras_adahan.datasets maps to the top-level datasets/.
    pkg_dir_path = epath.Path(__file__).parent

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(__file__)

    @property
    def scene_config(self):
        return scenes.CONFIGS[self.builder_config.name]

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.scene_config.image_size
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(size, size, 3)),
                "image_id": tfds.features.Text(),  # "<split>_<index>", the example's key.
                # 10 non-relational questions, then 10 relational ones.
                "questions": tfds.features.Sequence(
                    {
                        "question": tfds.features.Text(),
                        "answer": tfds.features.ClassLabel(names=scenes.ANSWERS),
                        "type": tfds.features.ClassLabel(names=scenes.QUESTION_TYPES),
                        # The object the question names (X), for grounding.
                        "box": tfds.features.BBoxFeature(),
                    },
                    length=scenes.QUESTIONS_PER_IMAGE,
                ),
                "objects": tfds.features.Sequence({
                    "color": tfds.features.ClassLabel(names=list(scenes.COLORS)),
                    "shape": tfds.features.ClassLabel(names=scenes.SHAPES),
                    "box": tfds.features.BBoxFeature(),
                }),
            }),
            supervised_keys=None,
            homepage=_HOMEPAGE,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Everything is drawn.
        return {split: self._generate_examples(split) for split in scenes.SPLITS}

    def _generate_examples(self, split):
        config = self.scene_config
        for index in range(config.num_examples(split)):
            scene = scenes.render_scene(config, split, index)
            key = f"{split}_{index:06d}"
            yield key, {
                "image": scene.image,
                "image_id": key,
                "questions": [
                    {"question": q.text, "answer": q.answer, "type": q.type,
                     "box": tfds.features.BBox(*q.box)}
                    for q in scene.questions
                ],
                "objects": [
                    {"color": o.color, "shape": o.shape, "box": tfds.features.BBox(*o.box)}
                    for o in scene.objects
                ],
            }
