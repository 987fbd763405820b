"""The datasets the trainer, evaluation and export can read, by name.

Each entry maps a `--dataset` name to its TFDS builder and an adapter from the builder's
examples to the one element the pipeline uses (`keras_adahan.data`):

    {"image": uint8 (H, W, 3),
     "questions": string (Q,), "answers": int (Q,), "types": int (Q,),
     "boxes": float (Q, 4) normalized (ymin, xmin, ymax, xmax) of the object that
              answers each question (for grounding)}

A new dataset is a TFDS builder in its folder beside this file and one entry here.
"""

import dataclasses
from typing import Callable

from .barn_vqa import scene_config as barn_scenes


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """How to read one VQA dataset.

    Attributes:
        name: the `--dataset` name.
        title: the name in messages, e.g. "barn_vqa/classic".
        make_builder: `data_dir -> tfds.core.DatasetBuilder` (not yet prepared).
        to_element: a builder example -> the pipeline's element (see the module docstring).
        answer_names: `builder -> [str]`, the answers in label order.
        type_names: `builder -> [str]`, the question types in label order.
        build_command: the shell command that prepares it, for messages.
        default_epochs: epochs when `--epochs` is not given.
        ungrounded_types, ungrounded_answers: questions whose answer is not one object
            (counting; "nothing" for an empty place): grounding leaves them out.
    """

    name: str
    title: str
    make_builder: Callable
    to_element: Callable
    answer_names: Callable
    type_names: Callable
    build_command: str
    default_epochs: int = 2
    ungrounded_types: tuple = ()
    ungrounded_answers: tuple = ()


def _barn_builder(config_name):
    def make_builder(data_dir):
        from .barn_vqa import Builder

        return Builder(config=config_name, data_dir=data_dir)

    return make_builder


def _barn_element(example):
    questions = example["questions"]
    return {"image": example["image"], "questions": questions["question"],
            "answers": questions["answer"], "types": questions["type"],
            "boxes": questions["box"]}


def _class_names(feature):
    return lambda builder: list(builder.info.features["questions"][feature].names)


# Epochs when --epochs is not given: the default model passes 99% on `classic` after 1-2
# epochs; `randomized`'s count questions keep improving for longer.
_BARN_EPOCHS = {"classic": 4, "classic_open": 4, "randomized": 15, "randomized_open": 15}

DATASETS = {
    name: DatasetSpec(
        name=name,
        title=f"barn_vqa/{name}",
        make_builder=_barn_builder(name),
        to_element=_barn_element,
        answer_names=_class_names("answer"),
        type_names=_class_names("type"),
        build_command=f"tfds build datasets/barn_vqa --config {name}",
        default_epochs=_BARN_EPOCHS.get(name, 2),
        ungrounded_types=("count",),
        ungrounded_answers=(barn_scenes.NOTHING,),
    )
    for name in barn_scenes.CONFIGS
}


def get_dataset(name):
    """The `DatasetSpec` of `name`; a `ValueError` names the known ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]
