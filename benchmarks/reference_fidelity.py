"""How far the fast `reference` preset is from the reference: the same weights in both.

    python benchmarks/reference_fidelity.py --draws 10 --images 100
    python benchmarks/reference_fidelity.py --draws 10 --images 100 --init keras

`reference_exact` computes the PyTorch reference's function (tests/test_reference_exact.py),
so no torch is needed here. For each weight draw d (seed d) a reference `state_dict` is
drawn as PyTorch initializes the reference's layers (`--init pytorch`: uniform
+-1/sqrt(fan_in) weights and biases, embedding N(0, 1)) and converted
(`keras_adahan.convert_reference`), or the model keeps Keras' initializers (`--init
keras`: glorot, zero biases, embedding U(-0.05, 0.05)). The `reference_exact` weights are
then copied into the fast `reference`
preset (fused conv + pool, GRU reading the padding; the same weight shapes) and both answer
the `classic` barn scenes' three questions, left-padded to 16 words. Prints, per draw and
over all, the share of questions where both keep the same cells (HAN, top-2) and give the
same answer, and the mean share of kept cells they share; then the same cells once more
with the fast preset's GRU skipping the padding too (`skip_padding=True`), which leaves the
pooling border as the one difference.
"""

import numpy as np

from keras_adahan import cli
from keras_adahan.convert_reference import load_reference_weights
from keras_adahan.datasets.barn_vqa import layout
from keras_adahan.datasets.barn_vqa import scene_config
from keras_adahan.model import VQAModel
from keras_adahan.presets import get_preset
from keras_adahan.text import Vocabulary

LENGTH = 16
# Layer of `reference` -> layer of `reference_exact` with the same weights.
FAST_TO_EXACT = {f"conv_pool_{i}": f"conv_{i}" for i in (1, 2, 3)}


def scenes(num_images):
    config = scene_config.get_config("classic")
    rendered = [layout.render_scene(config, "test", i) for i in range(num_images)]
    texts = [q.text for q in rendered[0].questions]
    vocabulary = Vocabulary.from_texts(texts)
    images = np.stack([s.image for s in rendered]).astype("float32")  # (I, 256, 256, 3)
    questions = vocabulary.encode_batch(texts, LENGTH)  # (Q, 16), left-padded
    return images, questions, vocabulary.size


def pytorch_state_dict(rng, num_words, num_answers):
    """A reference `state_dict` drawn as PyTorch's default initialization draws it."""
    def uniform(fan_in, *shape):
        return rng.uniform(-fan_in**-0.5, fan_in**-0.5, shape).astype("float32")

    state = {}
    for i, channels in ((1, 3), (2, 8), (3, 8)):
        state[f"encoder_cnn.conv{i}.weight"] = uniform(channels * 25, 8, channels, 5, 5)
        state[f"encoder_cnn.conv{i}.bias"] = uniform(channels * 25, 8)
    state["encoder_rnn.embedding.weight"] = rng.normal(size=(num_words, 8)).astype("float32")
    for name, shape in (("weight_ih_l0", (24, 8)), ("weight_hh_l0", (24, 8)),
                        ("bias_ih_l0", (24,)), ("bias_hh_l0", (24,))):
        state[f"encoder_rnn.gru.{name}"] = uniform(8, *shape)
    state["conv1by1.weight"], state["conv1by1.bias"] = uniform(8, 2, 8, 1, 1), uniform(8, 2)
    state["fc1.weight"], state["fc1.bias"] = uniform(1024, num_answers, 1024), uniform(1024, num_answers)
    return state


def copy_weights(exact, fast):
    for submodel in ("image_encoder", "answer_head"):
        for layer in fast.get_layer(submodel).layers:
            if layer.weights:
                name = FAST_TO_EXACT.get(layer.name, layer.name)
                layer.set_weights(exact.get_layer(submodel).get_layer(name).get_weights())


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=cli.positive_int, default=10,
                        help="weight draws (seeds 0..N-1)")
    parser.add_argument("--images", type=cli.positive_int, default=100,
                        help="classic test scenes")
    parser.add_argument("--init", default="pytorch", choices=("pytorch", "keras"),
                        help="how the weights are drawn")
    args = parser.parse_args(argv)

    import keras

    images, questions, vocab_size = scenes(args.images)
    sizes = dict(vocab_size=vocab_size, num_answers=4, max_question_length=LENGTH)
    image_rows = np.repeat(np.arange(len(images)), len(questions))
    question_rows = np.tile(np.arange(len(questions)), len(images))
    totals = []
    print(f"{len(image_rows)} questions ({len(images)} classic test scenes x {len(questions)}),"
          f" {args.init} initialization")
    print("draw  same cells  same answer  kept cells shared  same cells (padding skipped)")
    for draw in range(args.draws):
        keras.utils.set_random_seed(draw)
        exact = VQAModel(get_preset("reference_exact", **sizes))
        if args.init == "pytorch":
            state = pytorch_state_dict(np.random.default_rng(draw), vocab_size - 2, 4)
            load_reference_weights(exact, state)
        fast = VQAModel(get_preset("reference", **sizes))
        copy_weights(exact, fast)
        fast_pool_only = VQAModel(get_preset("reference", skip_padding=True, **sizes))
        copy_weights(exact, fast_pool_only)
        same_mask, same_answer, shared, same_mask_pool_only = [], [], [], []
        for start in range(0, len(image_rows), 96):
            rows = slice(start, start + 96)
            inputs = {"image": images[image_rows[rows]], "question": questions[question_rows[rows]]}
            a, b = exact.predict_on_batch(inputs), fast.predict_on_batch(inputs)
            same_mask.append((a["mask"] == b["mask"]).all(1))
            same_answer.append(a["answer"].argmax(1) == b["answer"].argmax(1))
            shared.append((a["mask"] * b["mask"]).sum(1) / a["mask"].sum(1))
            c = fast_pool_only.predict_on_batch(inputs)
            same_mask_pool_only.append((a["mask"] == c["mask"]).all(1))
        result = [np.concatenate(x).mean()
                  for x in (same_mask, same_answer, shared, same_mask_pool_only)]
        totals.append(result)
        print(f"{draw:4d}  {result[0]:10.1%}  {result[1]:11.1%}  {result[2]:17.1%}  "
              f"{result[3]:28.1%}")
    mean, low, high = np.mean(totals, 0), np.min(totals, 0), np.max(totals, 0)
    print("mean  " + "  ".join(f"{m:.1%} ({lo:.0%}..{hi:.0%})" for m, lo, hi in zip(mean, low, high)))


if __name__ == "__main__":
    cli.run(main)
