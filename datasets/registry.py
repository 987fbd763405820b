"""The datasets the trainer, evaluation and export can read, by name.

Each entry maps a `--dataset` name to its TFDS builder and an adapter from the builder's
examples to the one element the pipeline uses (`keras_adahan.data.Dataset`):

    {"image": uint8 (H, W, 3),
     "questions": string (Q,),
     "answers": int (Q,) label ids, or string (Q,) answer texts (their ids then follow the
                training split's sorted answers),
     "types": int (Q,) (optional: else from `answer_type`, or one type),
     "boxes": float (Q, 4) normalized (ymin, xmin, ymax, xmax) of the object that answers
              each question, (0, 0, 0, 0) where none (optional: for grounding)}

Q may differ from image to image. A new dataset is a TFDS builder in its folder beside this
file and one entry here.

    barn_vqa configs   classic, randomized, classic_open, randomized_open, tiny, ...
    clevr              TFDS's CLEVR 3.1.0 (datasets/clevr/)
    sort_of_clevr      Sort-of-CLEVR, 75x75 (datasets/sort_of_clevr/); sort_of_clevr_large
                       at 128x128, sort_of_clevr_more_scenes with 10x the train
                       images, sort_of_clevr_tiny for tests
    folder:PATH        a user's folder of images and JSON Lines (datasets/vqa_folder/)
"""

import dataclasses
import os
from typing import Callable

from .barn_vqa import scene_config as barn_scenes
from .vqa_folder import folder_format

FOLDER_PREFIX = "folder:"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """How to read one VQA dataset.

    Attributes:
        name: the `--dataset` name.
        title: the name in messages, e.g. "barn_vqa/classic".
        make_builder: `data_dir -> tfds.core.DatasetBuilder` (not yet prepared).
        to_element: a builder example -> the pipeline's element (see the module docstring).
        answer_names: `builder -> [str]`, the answers in label order; None: the training
            split's answer texts, sorted.
        type_names: `builder -> [str]`, the question types in label order.
        default_epochs: epochs when `--epochs` is not given.
        ungrounded_types, ungrounded_answers: questions whose answer is not one object
            (counting; "nothing" for an empty place): grounding leaves them out, as it
            leaves out questions without a box.
        answer_type: `answer text -> type name`, for datasets whose questions carry no type.
        evaluation_split: the split with answers that the trainer reports on.
        also_report_on: other datasets with the same answers whose test splits the trainer
            reports on too.
        training_digest: `() -> str`, a hash of what the training split holds, for a
            dataset that can change under its name (a user's folder): `--resume` compares
            it. None: the name fixes the data.
    """

    name: str
    title: str
    make_builder: Callable
    to_element: Callable
    answer_names: Callable
    type_names: Callable
    default_epochs: int = 2
    ungrounded_types: tuple = ()
    ungrounded_answers: tuple = ()
    answer_type: Callable = None
    evaluation_split: str = "test"
    also_report_on: tuple = ()
    training_digest: Callable = None


def _barn_builder(config_name):
    def make_builder(data_dir):
        from .barn_vqa import Builder

        return Builder(config=config_name, data_dir=data_dir)

    return make_builder


def _sequence_element(example):
    """Builders whose examples hold `questions: Sequence({question, answer, type, box})`."""
    questions = example["questions"]
    return {"image": example["image"], "questions": questions["question"],
            "answers": questions["answer"], "types": questions["type"],
            "boxes": questions["box"]}


def _class_names(feature):
    return lambda builder: list(builder.info.features["questions"][feature].names)


# Epochs when --epochs is not given: `classic` is learnt in a few epochs, `randomized`'s
# count questions keep improving for longer (README, Results).
_BARN_EPOCHS = {"classic": 4, "classic_open": 4, "randomized": 15, "randomized_open": 15}

DATASETS = {
    name: DatasetSpec(
        name=name,
        title=f"barn_vqa/{name}",
        make_builder=_barn_builder(name),
        to_element=_sequence_element,
        answer_names=_class_names("answer"),
        type_names=_class_names("type"),
        default_epochs=_BARN_EPOCHS.get(name, 2),
        ungrounded_types=("count",),
        ungrounded_answers=(barn_scenes.NOTHING,),
        # Trained where a place may be empty, tested on the scenes of the closed config too.
        also_report_on=(name[: -len("_open")],) if name.endswith("_open") else (),
    )
    for name in barn_scenes.CONFIGS
}


def _clevr_builder(data_dir):
    from .clevr import Builder

    return Builder(data_dir=data_dir)


def _clevr_element(example):
    qa = example["question_answer"]
    return {"image": example["image"], "questions": qa["question"], "answers": qa["answer"]}


def _clevr_answer_type(answer):
    from .clevr import answer_type

    return answer_type(answer)


def _clevr_type_names(builder):
    from .clevr import ANSWER_TYPES

    return list(ANSWER_TYPES)


DATASETS["clevr"] = DatasetSpec(
    name="clevr",
    title="clevr",
    make_builder=_clevr_builder,
    to_element=_clevr_element,
    answer_names=None,  # The training split's answer texts.
    type_names=_clevr_type_names,
    default_epochs=20,
    answer_type=_clevr_answer_type,
    evaluation_split="validation",  # CLEVR's test split has no answers.
)


def _sort_of_clevr_builder(config_name):
    def make_builder(data_dir):
        from .sort_of_clevr import Builder

        return Builder(config=config_name, data_dir=data_dir)

    return make_builder


for _config, _suffix in (("default", ""), ("large", "_large"), ("more_scenes", "_more_scenes"),
                          ("tiny", "_tiny")):
    DATASETS["sort_of_clevr" + _suffix] = DatasetSpec(
        name="sort_of_clevr" + _suffix,
        title=f"sort_of_clevr/{_config}",
        make_builder=_sort_of_clevr_builder(_config),
        to_element=_sequence_element,
        answer_names=_class_names("answer"),
        type_names=_class_names("type"),
        # Relation networks are trained for 20 epochs in the public implementations; as
        # many steps on more_scenes are 2 of its epochs.
        default_epochs={"tiny": 2, "more_scenes": 2}.get(_config, 20),
    )


def _folder_spec(path):
    path = os.path.abspath(os.path.expanduser(path))

    def make_builder(data_dir):
        from .vqa_folder.vqa_folder_dataset_builder import Builder
        from .vqa_folder.vqa_folder_dataset_builder import config_for

        return Builder(config=config_for(path), data_dir=data_dir)

    return DatasetSpec(
        name=FOLDER_PREFIX + path,
        title=f"the folder {path}",
        make_builder=make_builder,
        to_element=_sequence_element,
        answer_names=_class_names("answer"),
        type_names=_class_names("type"),
        default_epochs=4,
        training_digest=lambda: folder_format.training_digest(path),
    )


def get_dataset(name):
    """The `DatasetSpec` of `name`; a `ValueError` names the known ones."""
    if name.startswith(FOLDER_PREFIX) and name != FOLDER_PREFIX:
        return _folder_spec(name[len(FOLDER_PREFIX):])
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}, "
                         f"or {FOLDER_PREFIX}PATH (a folder of your own, see "
                         "datasets/vqa_folder/README.md)")
    return DATASETS[name]
