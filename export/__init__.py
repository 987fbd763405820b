"""SavedModel and TFLite export, installed as `keras_adahan.export`."""
