"""CLEVR through TFDS's own builder code, on dummy_data/ (CLEVR_v1.0's file layout)."""

import os

from tensorflow_datasets import testing

from keras_adahan.datasets.clevr import Builder


class ClevrTest(testing.DatasetBuilderTestCase):
    DATASET_CLASS = Builder
    # download_and_extract returns dummy_data/ itself, which holds CLEVR_v1.0/.
    DL_EXTRACT_RESULT = ""
    EXAMPLE_DIR = os.path.join(os.path.dirname(__file__), "dummy_data")
    SPLITS = {"train": 6, "validation": 3, "test": 3}
    SKIP_CHECKSUMS = True


if __name__ == "__main__":
    testing.test_main()
