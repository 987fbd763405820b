"""sort_of_clevr dataset.

Importing this package registers the `sort_of_clevr` builder with TFDS, so that
`tfds.builder("sort_of_clevr")` and `tfds build sort_of_clevr --imports
keras_adahan.datasets.sort_of_clevr` find it.
"""

# Absolute, as in barn_vqa/__init__.py: registers the builder once whichever way the
# package itself was imported.
from keras_adahan.datasets.sort_of_clevr.sort_of_clevr_dataset_builder import Builder  # noqa: F401
