"""barn_vqa dataset.

Importing this package registers the `barn_vqa` builder with TFDS, so that
`tfds.builder("barn_vqa")` and `tfds build barn_vqa --imports keras_adahan.datasets.barn_vqa`
find it.
"""

# Absolute import, on purpose: pytest collects this folder as `datasets.barn_vqa` and
# `tfds build datasets/barn_vqa` as `barn_vqa`; importing the builder by its installed name
# registers it exactly once, whichever way the package itself was imported.
from keras_adahan.datasets.barn_vqa.barn_vqa_dataset_builder import Builder  # noqa: F401
