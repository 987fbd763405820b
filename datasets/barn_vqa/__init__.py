"""barn_vqa dataset."""
