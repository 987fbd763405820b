"""sort_of_clevr builder test: builds the tiny config end to end from drawn scenes."""

from tensorflow_datasets import testing

from keras_adahan.datasets.sort_of_clevr.sort_of_clevr_dataset_builder import Builder


class SortOfClevrTest(testing.DatasetBuilderTestCase):
    DATASET_CLASS = Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["tiny"]
    SPLITS = {"train": 8, "validation": 4, "test": 4}
    SKIP_CHECKSUMS = True  # Nothing is downloaded.


if __name__ == "__main__":
    testing.test_main()
