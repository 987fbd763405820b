"""barn_vqa builder test: builds the tiny configs end to end from rendered scenes."""

from tensorflow_datasets import testing

from keras_adahan.datasets.barn_vqa.barn_vqa_dataset_builder import Builder


class BarnVqaTest(testing.DatasetBuilderTestCase):
    DATASET_CLASS = Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["tiny", "tiny_randomized"]
    SPLITS = {  # Expected number of examples on each split (both tiny configs).
        "train": 8,
        "validation": 4,
        "test": 4,
    }
    SKIP_CHECKSUMS = True  # Nothing is downloaded.


if __name__ == "__main__":
    testing.test_main()
