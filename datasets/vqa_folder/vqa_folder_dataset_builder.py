"""vqa_folder: a user's own images and questions (see folder_format.py), prepared for TFDS.

`python -m keras_adahan.train --dataset folder:PATH` (or `python -m keras_adahan.prepare
--dataset folder:PATH`, without training) builds it once into the TFDS data
folder (`DATA_DIR/vqa_folder/<fingerprint>/`), so training, evaluation and export read it
as they read barn_vqa and CLEVR. A change to the folder's files gives a new fingerprint,
and so a fresh build; the earlier build stays until removed.
"""

import collections
import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from . import folder_format

# Images are stored with their short side reduced (by a whole factor) towards this, as JPEG
# of quality 95: big enough for any preset here (the largest reads 256 px), small enough
# that 70,000 photos take a few GB, not tens.
STORED_MIN_SIDE = 320


@dataclasses.dataclass
class FolderConfig(tfds.core.BuilderConfig):
    """The folder a build reads; its name is the folder's fingerprint."""

    folder: str = ""


def config_for(path):
    """The `FolderConfig` of a folder (checks every line: `folder_format.FolderError`)."""
    path = os.path.abspath(path)
    return FolderConfig(name=folder_format.fingerprint(path), folder=path,
                        description=f"VQA folder {path}")


class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """DatasetBuilder for a VQA folder; give it `config=config_for(PATH)`."""

    name = "vqa_folder"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    # Installed as keras_adahan.datasets.vqa_folder: see barn_vqa's builder for why.
    pkg_dir_path = epath.Path(__file__).parent

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(__file__)

    def _lines(self):
        if not hasattr(self, "_cached_lines"):
            self._cached_lines = folder_format.read_folder(self.builder_config.folder)
        return self._cached_lines

    def _info(self) -> tfds.core.DatasetInfo:
        lines = self._lines()
        answers = sorted({line.answer for line in lines["train"]})
        types = sorted({line.type for split in lines.values() for line in split})
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "image_path": tfds.features.Text(),  # Relative to the folder.
                "questions": tfds.features.Sequence({
                    "question": tfds.features.Text(),
                    "answer": tfds.features.ClassLabel(names=answers),
                    "type": tfds.features.ClassLabel(names=types),
                    # (0, 0, 0, 0) where the line has no box: not used for grounding.
                    "box": tfds.features.BBoxFeature(),
                }),
            }),
            supervised_keys=None,
            description=self.builder_config.description,
        )

    def download_and_prepare(self, *args, **kwargs):
        # Every image's header is read first, so a file that is no image is named before
        # TFDS starts (and prints its progress bars); a damaged one is found when decoded.
        from keras_adahan.preprocessing import check_image

        folder = self.builder_config.folder
        first_lines = {}
        for lines in self._lines().values():
            for line in lines:
                first_lines.setdefault(line.image, line)
        for image, line in sorted(first_lines.items()):
            try:
                check_image(os.path.join(folder, image))
            except ValueError as error:
                raise folder_format.FolderError(f"{line.where}: {error}") from None
        super().download_and_prepare(*args, **kwargs)

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing is downloaded.
        return {split: self._generate_examples(split) for split in self._lines()}

    def _generate_examples(self, split):
        from keras_adahan.preprocessing import read_rgb

        folder = self.builder_config.folder
        by_image = collections.defaultdict(list)  # Questions of one image, in line order.
        for line in self._lines()[split]:
            by_image[line.image].append(line)
        for image, lines in sorted(by_image.items()):
            try:
                pixels = read_rgb(os.path.join(folder, image), STORED_MIN_SIDE)
            except ValueError as error:
                raise folder_format.FolderError(f"{lines[0].where}: {error}") from None
            yield image, {
                "image": np.ascontiguousarray(pixels),
                "image_path": image,
                "questions": [
                    {"question": line.question, "answer": line.answer, "type": line.type,
                     "box": tfds.features.BBox(*line.box)}
                    for line in lines
                ],
            }
