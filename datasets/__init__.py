"""The barn_vqa TFDS dataset, installed as `keras_adahan.datasets`."""
