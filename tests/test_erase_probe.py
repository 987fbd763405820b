"""benchmarks/erase_probe.py: the painting of target boxes."""

import dataclasses

import numpy as np
from conftest import load_benchmark

from keras_adahan import data
from keras_adahan import run_files

erase_probe = load_benchmark("erase_probe")


def test_erase_paints_each_questions_box_with_the_row_above():
    image = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    # Two questions on the same image; the first's box is rows 4-5, columns 2-3.
    arrays = data.QuestionArrays(
        images=image[None], image_index=np.array([0, 0]), questions=None, texts=None,
        answers=np.array([0, 1]), types=np.array([0, 1]),
        boxes=np.array([[0.5, 0.25, 0.75, 0.5], [0.0, 0.0, 0.125, 0.125]]))
    erased = erase_probe.erase_targets(arrays)
    assert erased.images.shape == (2, 8, 8, 3) and erased.image_index.tolist() == [0, 1]
    first = erased.images[0]
    # Rows 3-6, columns 1-4 (the box and a pixel around it) take row 2's pixels; the rest
    # is untouched.
    np.testing.assert_array_equal(first[3:7, 1:5], np.broadcast_to(image[2, 1:5], (4, 4, 3)))
    untouched = np.ones((8, 8), bool)
    untouched[3:7, 1:5] = False
    np.testing.assert_array_equal(first[untouched], image[untouched])
    np.testing.assert_array_equal(arrays.images[0], image)  # The input is not changed.
    # A box at the top edge is painted with the top row itself.
    np.testing.assert_array_equal(erased.images[1][0:2, 0:2],
                                  np.broadcast_to(image[0, 0:2], (2, 2, 3)))
    np.testing.assert_array_equal(erased.images[1][2:], image[2:])


def test_answers_are_numbered_as_the_model_numbers_them(exported_tiny_run):
    # A run of convert_reference keeps the reference's answer order: the probe compared the
    # model's answer ids with the dataset's, and named answers by the wrong ids.
    run = run_files.load_run(exported_tiny_run["run_dir"])
    dataset = data.prepare_dataset(run.config["train"]["dataset"],
                                   exported_tiny_run["data_dir"], build=False)
    reordered = dataclasses.replace(run, answers=run.answers[::-1])
    own = erase_probe.grounded_arrays(run, dataset)
    other = erase_probe.grounded_arrays(reordered, dataset)
    assert len(own.answers) > 0 and (own.answers != other.answers).any()
    assert ([run.answers[a] for a in own.answers]
            == [reordered.answers[a] for a in other.answers])
