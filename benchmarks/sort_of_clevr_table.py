"""Sort-of-CLEVR: HAN+RN against relation networks over all cells, and AdaHAN's budget.

    python benchmarks/sort_of_clevr_table.py  # seeds 0 1 2; not curricula or their first stages
    python benchmarks/sort_of_clevr_table.py --setups han_rn_more_scenes  # a curriculum
    python benchmarks/sort_of_clevr_table.py --setups adahan_rn_more_scenes rn_more_scenes \
        --seeds 0 1 2  # hours each (`-- --dtype mixed_bfloat16` where bfloat16 is faster)
    python benchmarks/sort_of_clevr_table.py --setups han_rn rn --seeds 0 --epochs 4
    python benchmarks/sort_of_clevr_table.py --dataset sort_of_clevr_large --setups han_rn
    python benchmarks/sort_of_clevr_table.py --threshold_study RUN   # any run, e.g. barn_vqa
    python benchmarks/sort_of_clevr_table.py --colour_probe RUN      # a Sort-of-CLEVR run
    python benchmarks/sort_of_clevr_table.py --coverage RUN          # a Sort-of-CLEVR run

Each setup is a `python -m keras_adahan.train --dataset sort_of_clevr --preset sort_of_clevr`
run with the flags below, one run folder per setup and seed under --runs_dir (finished runs
are reused and an interrupted one is resumed, so a table picks up where it stopped; a folder
trained with other settings is refused, naming them; runs train in float32, as the tables
so far did, unless `-- --dtype mixed_bfloat16` says so). A
curriculum (CURRICULA; not among the default setups, hours a seed) is a second run, on its
own dataset and epochs, that starts from another setup's run (`--init_from`). Prints, as
Markdown, mean and spread over seeds of: accuracy on non-relational and relational
questions and per subtype, cells kept, pairs the relational module computes per question, grounding (the
kept cell of highest presence on the object the question names), target kept (some kept
cell on that object) and training time; then,
for AdaHAN, the cells it keeps per question type, and what its softmax threshold alone
would keep (no floor, no ceiling) at other temperatures and thresholds, per question type,
from the trained presences. The published figures the README puts
beside them come from their papers and repositories, not from this script.

--colour_probe asks a trained run the shape of each of the six objects of test images, one
question per colour, and prints how often the answer is right and how often it changes
with the colour named: a model that ignores the colour answers one shape per image.

--coverage prints, per question type, how often a run's kept cells touch every object the
answer needs (by box: a cell's features also see past its box): a relational module can
only answer from what is kept.
"""

import collections
import itertools
import os
import sys

import numpy as np

from keras_adahan import cli
from keras_adahan.datasets import registry
from keras_adahan.datasets.sort_of_clevr import scenes
from keras_adahan.layers.han_mask import num_kept_cells

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/runs.py
import runs  # noqa: E402

WARMUP = ["--warmup_types", "shape", "--warmup_epochs", "12", "--lr_schedule", "constant"]
# The paper's AdaHAN: no floor; a ceiling of HAN's 7 cells bounds the pairs.
ADAHAN = ("--variant", "adahan", "--min_cells", "1", "--set", "max_cells=7")
# g reads each kept cell's image features beside its fused ones, as the published RN; at the
# preset's 1e-3 the RN loses what the warm-up taught, at 1e-4 it keeps it.
IMAGE_CELLS = ("--learning_rate", "1e-4", "--set", "relational_image_cells=true")
# A curriculum's second stage (CURRICULA): the first stage's model and rate (and these
# flags), the last epoch's weights kept.
SECOND_STAGE = ("--lr_schedule", "constant", "--no-restore_best_weights")
# name -> (what it is, trainer flags on top of the sort_of_clevr preset).
SETUPS = {
    "cnn_sum": ("CNN + sum (no attention)", ["--variant", "none", "--aggregation", "sum"]),
    "rn": ("RN over all cells", ["--variant", "none"]),
    "han_rn": ("HAN+RN (k = 7 cells)", ["--variant", "han"]),
    "adahan_rn": ("AdaHAN+RN (1 to 7 cells)", [*ADAHAN]),
    # Trained with the soft head (ModelConfig.soft_head_weight): every cell's presence learns.
    "han_rn_soft_head": ("HAN+RN, soft head in training (k = 7)",
                         ["--variant", "han", "--set", "soft_head_weight=1"]),
    "adahan_rn_soft_head": ("AdaHAN+RN, soft head in training (1 to 7)",
                            [*ADAHAN, "--set", "soft_head_weight=1"]),
    "han_sum": ("HAN + sum (k = 7 cells)", ["--variant", "han", "--aggregation", "sum"]),
    "soft_rn": ("soft attention + RN", ["--variant", "soft"]),
    # A shape-only warm-up (12 epochs, so --epochs 13 or more; docs: 18, HAN+RN 30): the
    # model learns to find the object the question names before the other questions count.
    "cnn_sum_warmup": ("CNN + sum, shape warm-up", ["--variant", "none", "--aggregation", "sum",
                                                     *WARMUP]),
    "han_sum_warmup": ("HAN + sum, shape warm-up", ["--variant", "han", "--aggregation", "sum",
                                                     *WARMUP]),
    # At the preset's 1e-3 the RN loses what the warm-up taught; at 1e-4 it keeps it.
    "han_rn_warmup": ("HAN+RN, shape warm-up", ["--variant", "han", *WARMUP,
                                                 "--learning_rate", "1e-4"]),
    "adahan_rn_warmup": ("AdaHAN+RN, shape warm-up", [*ADAHAN, *WARMUP,
                                                      "--learning_rate", "1e-4"]),
    "rn_warmup": ("RN over all cells, shape warm-up", ["--variant", "none", *WARMUP,
                                                      "--learning_rate", "1e-4"]),
    "han_rn_image_warmup": ("HAN+RN, g reads the image's cells, shape warm-up",
                            ["--variant", "han", *WARMUP, *IMAGE_CELLS]),
    "adahan_rn_image_warmup": ("AdaHAN+RN, g reads the image's cells, shape warm-up",
                               [*ADAHAN, *WARMUP, *IMAGE_CELLS]),
    "rn_image_warmup": ("RN over all cells, g reads the image's cells, shape warm-up",
                        ["--variant", "none", *WARMUP, *IMAGE_CELLS]),
    # Both, as the published RN's g(o_i, o_j, q): the image's cells and the question.
    "han_rn_image_question_warmup": (
        "HAN+RN, g reads the image's cells and the question, shape warm-up",
        ["--variant", "han", *WARMUP, "--learning_rate", "1e-4",
         "--set", "relational_image_cells=true", "--set", "relational_question=true"]),
    # Curricula (CURRICULA below): the best run's path, for HAN+RN, AdaHAN+RN and the
    # control, RN over all cells; and the same three with g reading only the fused cells,
    # whose HAN+RN warm-up bound every colour in three seeds of three.
    "han_rn_image_more_scenes": (
        "HAN+RN, g reads the image's cells; then closest and furthest on ten times the scenes",
        ["--variant", "han", *IMAGE_CELLS, *SECOND_STAGE]),
    "adahan_rn_image_more_scenes": (
        "AdaHAN+RN, g reads the image's cells; then closest and furthest on ten times the "
        "scenes", [*ADAHAN, *IMAGE_CELLS, *SECOND_STAGE]),
    "rn_image_more_scenes": (
        "RN over all cells, g reads the image's cells; then closest and furthest on ten "
        "times the scenes", ["--variant", "none", *IMAGE_CELLS, *SECOND_STAGE]),
    "han_rn_more_scenes": (
        "HAN+RN; then closest and furthest on ten times the scenes",
        ["--variant", "han", "--learning_rate", "1e-4", *SECOND_STAGE]),
    "adahan_rn_more_scenes": (
        "AdaHAN+RN; then closest and furthest on ten times the scenes",
        [*ADAHAN, "--learning_rate", "1e-4", *SECOND_STAGE]),
    "rn_more_scenes": (
        "RN over all cells; then closest and furthest on ten times the scenes",
        ["--variant", "none", "--learning_rate", "1e-4", *SECOND_STAGE]),
}


# Setups that start from another setup's run (--init_from): name -> (that setup, its
# dataset and epochs; this stage's dataset and epochs, its flags beside its SETUPS flags).
CURRICULA = {
    # The path of the image-cells run (docs/sort_of_clevr.md): SETUP_warmup for 30 epochs on
    # the 9,800 scenes (its weights of lowest validation loss), then on ten times the scenes
    # six epochs of closest and furthest alone and twelve of every type; where g reads the
    # fused cells, six and three (seed 0 of its HAN+RN peaked in validation at epoch 9 of 18).
    f"{setup}_more_scenes": (f"{setup}_warmup", "sort_of_clevr", 30,
                             "sort_of_clevr_more_scenes", second_stage_epochs,
                             ["--warmup_types", "closest", "furthest", "--warmup_epochs", "6"])
    for setups, second_stage_epochs in ((("han_rn_image", "adahan_rn_image", "rn_image"), 18),
                                        (("han_rn", "adahan_rn", "rn"), 9))
    for setup in setups
}


def run(setup, seed, args):
    """Trains `setup` for `seed` unless its run folder is finished; its results."""
    if setup not in CURRICULA:
        return load_result(train_once(setup, seed, args, args.dataset, args.epochs))
    first, first_dataset, first_epochs, dataset, epochs, flags = CURRICULA[setup]
    start = train_once(first, seed, args, first_dataset, first_epochs)
    result = load_result(train_once(setup, seed, args, dataset, epochs,
                                    ["--init_from", start, *flags]))
    result["training"]["seconds_all_epochs"] = sum(  # Both stages.
        r["training"].get("seconds_all_epochs") or r["training"]["seconds"]
        for r in (result, load_result(start)))
    return result


def stages(args):
    """The trainer flags (before the user's) of every run that `args.setups` train, for seed
    0; a curriculum's second stage starts from the current folder (its first stage's run
    may not exist yet)."""
    for setup in args.setups:
        if setup not in CURRICULA:
            yield trainer_flags(setup, 0, args, args.dataset, args.epochs)[1]
            continue
        first, first_dataset, first_epochs, dataset, epochs, flags = CURRICULA[setup]
        yield trainer_flags(first, 0, args, first_dataset, first_epochs)[1]
        yield trainer_flags(setup, 0, args, dataset, epochs,
                            ["--init_from", os.curdir, *flags])[1]


def load_result(run_dir):
    from keras_adahan import run_files

    result = {"run_dir": run_dir, **{  # A damaged file: one line that names it.
        name: run_files.read_json(os.path.join(run_dir, f"{name}.json"))
        for name in ("metrics", "training", "config")}}
    for name, key in (("metrics", "accuracy_per_type"), ("training", "seconds")):
        if not isinstance(result[name], dict) or key not in result[name]:
            raise ValueError(f"{os.path.join(run_dir, name + '.json')!r} holds no {key!r}: "
                             f"not what the trainer writes (`python -m keras_adahan.evaluate "
                             f"{run_dir}` rewrites metrics.json)")
    return result


def trainer_flags(setup, seed, args, dataset, epochs, flags=()):
    """The run folder and the trainer flags of one run of `setup`, before the user's (after
    --)."""
    out = os.path.join(args.runs_dir, f"{dataset}-{setup}-seed{seed}")
    epochs = epochs or registry.get_dataset(dataset).default_epochs  # As the trainer's.
    own = ["--dataset", dataset, "--preset", "sort_of_clevr", "--seed", str(seed),
           "--output_dir", out, "--epochs", str(epochs), "--resume", *SETUPS[setup][1], *flags,
           "--dtype", "float32"]  # As the tables so far; `-- --dtype ...` overrides.
    if args.data_dir:
        own += ["--data_dir", args.data_dir]
    return out, own


def train_once(setup, seed, args, dataset, epochs, flags=()):
    """The run folder of `setup` on `dataset` for `seed`, trained unless finished."""
    out, own = trainer_flags(setup, seed, args, dataset, epochs, flags)
    runs.train_unless_finished(out, own + args.trainer_flags, args.quiet)
    return out


def summarize(result):
    metrics, config = result["metrics"], result["config"]["model"]
    per_type = metrics["accuracy_per_type"]
    return {
        "non-relational": _mean_over(per_type, scenes.NON_RELATIONAL),
        "relational": _mean_over(per_type, scenes.RELATIONAL),
        **{name: per_type.get(name) for name in scenes.QUESTION_TYPES},
        "cells kept": metrics["kept_share_mean"] * metrics["num_cells"],
        "pairs": _pairs(config, metrics["num_cells"]),
        "grounding": metrics.get("grounding_top_cell"),
        "target kept": metrics.get("grounding_target_kept"),
        # A resumed run: all its epochs, where the backup recorded them.
        "minutes": (result["training"].get("seconds_all_epochs")
                    or result["training"]["seconds"]) / 60,
    }


def _mean_over(per_type, names):
    # Subtypes are drawn uniformly per question: their plain mean is the group's accuracy.
    values = [per_type[n] for n in names if n in per_type]
    return float(np.mean(values)) if values else None


def _pairs(config, num_cells):
    if config["aggregation"] != "relational":
        return 0
    # As model.build_answer_head sizes the module (k may be a share of the cells).
    gathered = None
    if config["variant"] == "han":
        gathered = num_kept_cells(config["k"], num_cells)
    elif config["variant"] == "adahan":
        gathered = config["max_cells"]
    return (gathered or num_cells) ** 2


TEMPERATURES = (0.25, 0.5, 1.0, 2.0, 4.0)


def threshold_study(run_dir, data_dir):
    """Cells whose softmax(presence / T) reaches 1/N, with no floor or ceiling, averaged
    per question type, for each temperature T; also at T = 1 with thresholds 2/N, 4/N."""
    from keras_adahan import data
    from keras_adahan import evaluate
    from keras_adahan import run_files

    run = run_files.load_run(run_dir)
    dataset = data.run_dataset(run, data_dir)
    evaluation = evaluate.evaluate(run.model, dataset, run.vocabulary)
    types = evaluation.arrays.types
    presence = evaluation.outputs["presence"].astype(np.float64)  # (Q, N)
    num_cells = presence.shape[1]

    def passing(scaled, threshold):
        scaled = scaled - scaled.max(1, keepdims=True)
        softmax = np.exp(scaled) / np.exp(scaled).sum(1, keepdims=True)
        return (softmax >= threshold).sum(1)

    rows = {f"T = {t:g}": passing(presence / t, 1 / num_cells) for t in TEMPERATURES}
    for times in (2, 4):
        rows[f"T = 1, threshold {times}/N"] = passing(presence, times / num_cells)
    names = dataset.type_names
    return {label: {name: float(kept[types == i].mean()) for i, name in enumerate(names)}
            for label, kept in rows.items()}


def _scene_config(run, flag, run_dir):
    """The `scenes.SceneConfig` a loaded run was trained on; one line if not Sort-of-CLEVR."""
    dataset = run.config["train"]["dataset"]  # sort_of_clevr, sort_of_clevr_large, ...
    name = dataset.replace("sort_of_clevr", "").lstrip("_") or "default"
    if not dataset.startswith("sort_of_clevr") or name not in scenes.CONFIGS:
        raise ValueError(f"{flag}: {run_dir!r} was trained on {dataset!r}; expected a "
                         "Sort-of-CLEVR run (--dataset sort_of_clevr...)")
    return scenes.CONFIGS[name]


def _ask(run, scene, texts):
    """The run's outputs for the questions `texts` about `scene`'s image."""
    from keras_adahan.preprocessing import resize_images

    config = run.model.config
    questions = run.vocabulary.encode_batch(texts, config.max_question_length)
    # As the input pipeline: a run of another `--set image_size` sees its own size.
    image = resize_images(scene.image[None].astype("float32"), config.image_size).numpy()
    image = np.repeat(image, len(texts), axis=0)
    return run.model.predict({"image": image, "question": questions}, verbose=0)


def colour_probe(run_dir, images=40):
    """(shape accuracy per colour, share of images whose answer changes with the colour,
    images asked) when the run is asked the shape of each object of the first `images`
    test images (all of them in a smaller test split)."""
    from keras_adahan import run_files

    run = run_files.load_run(run_dir)
    config = _scene_config(run, "--colour_probe", run_dir)
    images = min(images, config.num_examples("test"))
    right, varies = collections.Counter(), 0
    for index in range(images):
        scene = scenes.render_scene(config, "test", index)
        texts = [scenes.TEMPLATES["shape"].format(o.color) for o in scene.objects]
        outputs = _ask(run, scene, texts)
        answers = [run.answers[i] for i in outputs["answer"].argmax(-1)]
        right.update(o.color for a, o in zip(answers, scene.objects) if a == o.shape)
        varies += len(set(answers)) > 1
    return {color: right[color] / images for color in scenes.COLORS}, varies / images, images


def needed_objects(scene, question):
    """Indices of the objects a question's answer depends on: the named one; with the one
    closest to or furthest from it; or, to count, all of them."""
    colors = [o.color for o in scene.objects]
    named = colors.index(question.color)
    if question.type == "count":
        return list(range(len(colors)))
    if question.type in ("closest", "furthest"):
        centers = np.array([o.center for o in scene.objects], dtype=np.float64)
        distances = ((centers - centers[named]) ** 2).sum(1)
        distances[named] = np.inf if question.type == "closest" else -np.inf
        other = distances.argmin() if question.type == "closest" else distances.argmax()
        return [named, int(other)]
    return [named]


def coverage(run_dir, images=200):
    """Over the first `images` test images (all of them in a smaller test split; their
    number is returned last): per question type, the share of questions
    whose kept cells touch every object the answer needs (`needed_objects`); per image, the
    fewest cells of the run's grid that touch all six objects; and for closest and
    furthest, the shares of the run's answers and of the right answers that are the
    commonest shape among the other five objects (what a model that does not compare
    distances can answer); per question type, the share answered right among the questions
    whose kept cells touch those objects and among the others (None where there are none).
    """
    from keras_adahan import geometry
    from keras_adahan import run_files

    run = run_files.load_run(run_dir)
    config = _scene_config(run, "--coverage", run_dir)
    images = min(images, config.num_examples("test"))
    grid_size, edges = run.model.grid_size, run.model.cell_edges
    covered, fewest, commonest = collections.defaultdict(list), [], collections.defaultdict(list)
    for index in range(images):
        scene = scenes.render_scene(config, "test", index)
        touches = geometry.box_overlap_shares(
            grid_size, np.array([o.box for o in scene.objects]), edges) > 0  # (objects, N)
        outputs = _ask(run, scene, [q.text for q in scene.questions])
        kept = outputs["mask"] > 0.5  # (questions, N)
        answers = [run.answers[i] for i in outputs["answer"].argmax(-1)]
        for question, cells, answer in zip(scene.questions, kept, answers):
            needed = needed_objects(scene, question)
            covered[question.type].append(
                (touches[:, cells].any(1)[needed].all(), answer == question.answer))
            if question.type in ("closest", "furthest"):
                others = collections.Counter(
                    o.shape for i, o in enumerate(scene.objects) if i != needed[0])
                shape = others.most_common(1)[0][0]
                commonest[question.type].append((answer == shape, question.answer == shape))
        fewest.append(_fewest_covering_cells(touches))
    shares, right = {}, {}
    for name in scenes.QUESTION_TYPES:
        touched, correct = np.array(covered[name], dtype=bool).reshape(-1, 2).T
        shares[name] = float(touched.mean()) if len(touched) else None
        right[name] = tuple(float(correct[where].mean()) if where.any() else None
                            for where in (touched, ~touched))
    return (shares,
            collections.Counter(fewest),
            {name: np.mean(commonest[name], axis=0) for name in ("closest", "furthest")},
            right,
            images)


def _fewest_covering_cells(touches):
    """The fewest cells (columns of `touches`, objects x cells) that touch every object."""
    candidates = np.flatnonzero(touches.any(0))
    for size in range(1, len(touches) + 1):
        for cells in itertools.combinations(candidates, size):
            if touches[:, list(cells)].any(1).all():
                return size
    raise AssertionError("a cell touches every object, so six cells always do")


def cell(values, scale=100, digits=1):
    values = np.array([v for v in values if v is not None], dtype=float)
    if not len(values):
        return "-"
    if len(values) == 1:
        return f"{values[0] * scale:.{digits}f}"
    return f"{values.mean() * scale:.{digits}f} ± {values.std(ddof=1) * scale:.{digits}f}"


COLUMNS = (("non-relational", 100, 1), ("relational", 100, 1), ("shape", 100, 1),
           ("left", 100, 1), ("top", 100, 1), ("closest", 100, 1), ("furthest", 100, 1),
           ("count", 100, 1), ("cells kept", 1, 1), ("pairs", 1, 0), ("grounding", 100, 1),
           ("target kept", 100, 1),
           ("minutes", 1, 1))


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=None,
                        choices=[name for name in registry.DATASETS
                                 if name.startswith("sort_of_clevr")],
                        help="default: sort_of_clevr (curricula name their own)")
    # A curriculum and its first stage (30 epochs, a folder of the same name as a 20-epoch
    # run of that setup) are asked for by name.
    firsts = {first for first, *_ in CURRICULA.values()}
    parser.add_argument("--setups", nargs="+", action=cli.Distinct, choices=list(SETUPS),
                        default=[name for name in SETUPS
                                 if name not in CURRICULA and name not in firsts])
    parser.add_argument("--seeds", nargs="+", type=cli.seed, default=[0, 1, 2],
                        action=cli.Distinct)
    parser.add_argument("--epochs", type=cli.positive_int, default=None,
                        help="default: the trainer's (20)")
    parser.add_argument("--data_dir", type=cli.folder_path, default=None,
                        help="where the datasets are built (and --threshold_study's run's)")
    parser.add_argument("--runs_dir", type=cli.folder_path,
                        default=os.path.join("runs", "sort_of_clevr_table"))
    parser.add_argument("--quiet", action="store_true", help="hide the trainer's output")
    modes = parser.add_mutually_exclusive_group()  # Each prints about one run, then stops.
    modes.add_argument("--threshold_study", metavar="RUN", default=None, type=cli.run_path,
                        help="only print the threshold study of this run folder or model.keras "
                             "(any dataset)")
    modes.add_argument("--colour_probe", metavar="RUN", default=None, type=cli.run_path,
                        help="only ask this Sort-of-CLEVR run each object's shape, colour by "
                             "colour, and print whether its answers follow the colour")
    modes.add_argument("--coverage", metavar="RUN", default=None, type=cli.run_path,
                        help="only print, per question type, how often this Sort-of-CLEVR "
                             "run's kept cells touch every object the answer needs")
    parser.add_argument("trainer_flags", nargs="*",
                        help="after --: more flags for every run, e.g. -- --learning_rate 3e-4")
    args = parser.parse_args(argv)
    mode = next((f"--{name}" for name in ("threshold_study", "colour_probe", "coverage")
                 if getattr(args, name)), None)
    if mode:  # It reads one run: the table's flags would do nothing.
        unused = [f"--{name}" for name in ("dataset", "setups", "seeds", "epochs", "runs_dir",
                                           "quiet", "data_dir")
                  if getattr(args, name) != parser.get_default(name)
                  and not (name == "data_dir" and mode == "--threshold_study")]
        unused += ["flags after --"] * bool(args.trainer_flags)
        if unused:
            parser.error(f"{', '.join(unused)}: not used by {mode}, which reads one run")
    if args.threshold_study:
        study = threshold_study(args.threshold_study, args.data_dir)
        print(f"{args.threshold_study}: mean cells whose softmax(presence / T) reaches the "
              "threshold, no floor or ceiling, per question type")
        for label, per_type in study.items():
            print(f"  {label:<22} " + ", ".join(f"{n} {v:.2f}" for n, v in per_type.items()))
        return
    if args.colour_probe:
        per_colour, varies, images = colour_probe(args.colour_probe)
        print(f"{args.colour_probe}: the shape of each object of {images} test images, "
              f"asked colour by colour: {np.mean(list(per_colour.values())):.1%} right ("
              + ", ".join(f"{c} {v:.0%}" for c, v in per_colour.items())
              + f"); the answer changes with the colour on {varies:.0%} of the images")
        return
    if args.coverage:
        per_type, fewest, commonest, right, images = coverage(args.coverage)
        print(f"{args.coverage}: questions whose kept cells touch every object the answer "
              "needs (the named one; with the closest or furthest; all six to count), "
              f"{images} test images (%): "
              + ", ".join(f"{n} {cell([v])}" for n, v in per_type.items()))
        print("  fewest cells that touch all six objects, images: " + ", ".join(
            f"{size} cells {count}" for size, count in sorted(fewest.items())))
        print("  closest and furthest answered with the commonest shape of the other five "
              "objects: " + ", ".join(f"{n} {by_model:.1%} (the right answer for {truth:.1%})"
                                      for n, (by_model, truth) in commonest.items()))
        print("  answered right where the kept cells touch those objects / where they do not "
              "(%): " + ", ".join(f"{n} {cell([touched])} / {cell([untouched])}"
                          for n, (touched, untouched) in right.items()))
        return

    curricula = [name for name in args.setups if name in CURRICULA]
    if curricula and (args.dataset or args.epochs):
        parser.error(f"{', '.join(curricula)} set their own datasets and epochs: run them "
                     "without --dataset and --epochs")
    args.dataset = args.dataset or "sort_of_clevr"
    if args.trainer_flags:
        from keras_adahan import train
        for stage in stages(args):
            train.check_flags_passed_on(args.trainer_flags, stage, overridable=["--dtype"])
    epochs = args.epochs or registry.get_dataset(args.dataset).default_epochs
    for setup in args.setups:
        flags = SETUPS[setup][1]
        if setup not in CURRICULA and "--warmup_epochs" in flags:
            warmup = int(flags[flags.index("--warmup_epochs") + 1])
            if epochs <= warmup:
                parser.error(f"{setup} warms up for {warmup} epochs: pass --epochs above "
                             f"{warmup} (docs/sort_of_clevr.md: 18 or 30), received {epochs}")

    rows, adahan = {}, {}
    for setup in args.setups:
        results = [run(setup, seed, args) for seed in args.seeds]
        rows[setup] = [summarize(r) for r in results]
        if SETUPS[setup][1][1] == "adahan":
            adahan[setup] = results

    print(f"\n{args.dataset}, test split, seeds {args.seeds} (mean ± sample std; %, but "
          "cells, pairs and minutes)\n")
    print("| setup | " + " | ".join(name for name, _, _ in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for setup, seed_rows in rows.items():
        print(f"| {SETUPS[setup][0]} | " + " | ".join(
            cell([r[name] for r in seed_rows], scale, digits) for name, scale, digits in COLUMNS
        ) + " |")
    if adahan:
        print("\nAdaHAN: mean cells kept per question type (its floor and ceiling applied)")
        for setup, results in adahan.items():
            for seed, result in zip(args.seeds, results):
                metrics = result["metrics"]
                kept = ", ".join(
                    f"{n} {v:.2f}" for n, v in metrics["kept_cells_per_type"].items())
                spread = ", ".join(
                    f"{k} {v:.0f}" for k, v in metrics["kept_cells_distribution"].items())
                print(f"  {setup}, seed {seed}: {kept}   (distribution: {spread})")
        for setup, results in adahan.items():
            print(f"\n{setup}, seed {args.seeds[0]} - the softmax threshold alone (no floor or "
                  "ceiling): mean cells passing, per question type")
            # A curriculum's run folder is named after its own dataset.
            for label, per_type in threshold_study(results[0]["run_dir"], args.data_dir).items():
                print(f"  {label:<22} " + ", ".join(f"{n} {v:.2f}" for n, v in per_type.items()))


if __name__ == "__main__":
    cli.run(main)  # A bad run folder: one line, not a traceback.
