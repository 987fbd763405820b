"""CLEVR through TensorFlow Datasets' own `clevr` builder (version 3.1.0, with questions).

`Builder` is TFDS's builder, unchanged but for where the archive comes from: a
`CLEVR_v1.0.zip` (or its extracted `CLEVR_v1.0/` folder) already in
`DATA_DIR/downloads/manual/` is used instead of downloading the 18 GB again. It builds into
the same folder as `tfds build clevr` (`DATA_DIR/clevr/3.1.0/`), so a dataset built either
way serves both.

CLEVR's questions carry no type in TFDS; `answer_type` groups the answers into the usual
kinds for per-type accuracy.
"""

from etils import epath
from tensorflow_datasets.datasets.clevr import clevr_dataset_builder as tfds_clevr

ARCHIVE = "CLEVR_v1.0.zip"
FOLDER = "CLEVR_v1.0"
IMAGES = {"train": 70_000, "val": 15_000, "test": 15_000}  # CLEVR v1.0's, per split folder.
# The answer kinds of CLEVR's question families, as papers report them.
ANSWER_TYPES = ("yes/no", "count", "color", "shape", "material", "size")
_KINDS = {
    "yes/no": ("yes", "no"),
    "color": ("gray", "blue", "brown", "yellow", "red", "green", "purple", "cyan"),
    "shape": ("cube", "sphere", "cylinder"),
    "material": ("rubber", "metal"),
    "size": ("small", "large"),
}


def answer_type(answer):
    """The kind of a CLEVR answer: "count" for a number, else yes/no, colour ..."""
    if answer.isdigit():
        return "count"
    for kind, answers in _KINDS.items():
        if answer in answers:
            return kind
    raise ValueError(f"{answer!r} is not a CLEVR answer")


class Builder(tfds_clevr.Builder, skip_registration=True):
    """TFDS's CLEVR builder, reading an archive already in `DATA_DIR/downloads/manual/`."""

    name = "clevr"  # TFDS's own folder: DATA_DIR/clevr/3.1.0.
    # TFDS's metadata of CLEVR (README, citation, the archive's checksum), not a copy.
    pkg_dir_path = epath.Path(tfds_clevr.__file__).parent

    def _split_generators(self, dl_manager):
        manual = epath.Path(self.data_dir_root) / "downloads" / "manual"
        for local in (manual / FOLDER, manual / ARCHIVE):
            if local.exists():
                if local.is_dir():
                    check_extracted(local)
                print(f"Using {local} (not downloading CLEVR)")
                return super()._split_generators(_LocalArchive(dl_manager, manual, local))
        return super()._split_generators(dl_manager)


def check_extracted(folder):
    """Raises `ValueError` unless every split folder of an extracted CLEVR holds all its
    images: TFDS reads the questions of the images it finds, so a half-extracted folder
    would build a smaller CLEVR without a word."""
    for split, expected in IMAGES.items():
        images = folder / "images" / split
        found = len(list(images.glob("*.png"))) if images.is_dir() else 0
        if found < expected:  # More is a file manager's own (.DS_Store) or a user's.
            raise ValueError(
                f"{str(images)!r} holds {found:,} images, CLEVR v1.0's {expected:,}: an "
                f"interrupted extraction? Extract {ARCHIVE} again, or move {str(folder)!r} "
                f"away to build from {ARCHIVE} beside it (or download it)")


class _LocalArchive:
    """A download manager whose `download_and_extract` answers with an archive on disk:
    the folder holding `CLEVR_v1.0/`, extracting the zip first if that is what is there."""

    def __init__(self, dl_manager, manual, local):
        self._dl_manager, self._manual, self._local = dl_manager, manual, local

    def download_and_extract(self, url):
        del url  # CLEVR_v1.0.zip's, which is here already.
        if self._local.is_dir():
            return self._manual
        return self._dl_manager.extract(self._local)

    def __getattr__(self, name):
        return getattr(self._dl_manager, name)
