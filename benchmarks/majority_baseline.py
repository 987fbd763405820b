"""Question-blind baselines of barn_vqa: how far answer priors alone get.

For each config, takes the most common answer on the training split (over all questions,
and per question type) and scores it on the test split:

- blind: one answer for every question, whatever it asks;
- per type: the most common answer of each question type (knows the type, not the image).

A model that beats these uses the image. Only the renderer runs (no TFDS build).

Example:

```
python benchmarks/majority_baseline.py                       # classic and randomized
python benchmarks/majority_baseline.py --configs tiny_randomized
```
"""

import collections

from keras_adahan import cli
from keras_adahan.datasets.barn_vqa import layout, scene_config


def answers_by_type(config, split):
    """Returns {question type: [answer, ...]} over every image of `split`."""
    by_type = collections.defaultdict(list)
    for _, scene in layout.render_split(config, split):
        for question in scene.questions:
            by_type[question.type].append(question.answer)
    return by_type


def majority_baselines(config):
    """Returns (blind answer, blind accuracy, {type: (answer, accuracy)}, per-type accuracy)."""
    train, test = answers_by_type(config, "train"), answers_by_type(config, "test")
    every_train = collections.Counter(a for answers in train.values() for a in answers)
    blind = every_train.most_common(1)[0][0]
    num_test = sum(len(answers) for answers in test.values())
    blind_accuracy = sum(a == blind for answers in test.values() for a in answers) / num_test
    per_type, right = {}, 0
    for qtype in config.question_types:
        guess = collections.Counter(train[qtype]).most_common(1)[0][0]
        hits = sum(a == guess for a in test[qtype])
        per_type[qtype] = (guess, hits / len(test[qtype]))
        right += hits
    return blind, blind_accuracy, per_type, right / num_test


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configs", nargs="+", default=["classic", "randomized"],
        choices=sorted(scene_config.CONFIGS),
    )
    args = parser.parse_args(argv)
    for name in args.configs:
        config = scene_config.get_config(name)
        blind, blind_accuracy, per_type, type_accuracy = majority_baselines(config)
        print(
            f"{name}: test questions {config.num_test * config.questions_per_image}; "
            f"blind majority {blind!r}: {blind_accuracy:.1%}; "
            f"per-type majority: {type_accuracy:.1%}"
        )
        for qtype, (guess, accuracy) in per_type.items():
            print(f"  {qtype}: majority {guess!r}: {accuracy:.1%}")


if __name__ == "__main__":
    cli.run(main)
