"""vqa_folder: a user's own VQA folder as a TFDS dataset (see folder_format.py)."""
