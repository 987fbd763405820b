"""Named model configurations: `get_preset(name, **overrides)`.

- `reference`: the PyTorch reference (PyTorch-AdaHAN) layer for layer, fast (fused conv +
  pool); it differs from the reference at the image's borders and in the question padding.
  Train: `python -m keras_adahan.train --preset reference`
- `reference_exact`: the reference's function exactly: given its weights
  (`python -m keras_adahan.convert_reference`), the same presences, kept cells and
  log-probabilities (tests/test_reference_exact.py).
  Train: `python -m keras_adahan.train --preset reference_exact`
- `default`: tuned for accuracy and speed on 2 CPU cores (the `ModelConfig` defaults).
  Train: `python -m keras_adahan.train --preset default`
- `clevr`, `sort_of_clevr`: for those datasets (`--dataset clevr`, `--dataset sort_of_clevr`).

Each takes `--variant han|adahan|soft|none`; the trainer sets `vocab_size` and
`num_answers` from the dataset (and refuses questions longer than `max_question_length`).
"""

from keras_adahan.config import ModelConfig

PRESETS = {
    # The PyTorch reference layer for layer: 256x256 input; 3 x [conv 5x5, 8 channels, 'same'
    # padding -> average pooling 3/2 'same' -> ReLU] -> 32x32 = 1024 cells; embedding 8 +
    # GRU 8; the question vector ADDED to every cell; a linear 1x1 conv to 2 channels;
    # squared-L2 presence; HAN with k = 2 cells; its head: the 2 channels summed per cell,
    # the masked 1024-vector -> Dense(num_answers).
    # Conv and pool fused into one strided conv (layers.ConvAveragePool2D). Two
    # differences from the reference, so its masks and answers differ on some inputs
    # (README, "reference and reference_exact"): where a pooling window hangs over the
    # border the fused conv averages the conv of padded input, not zeros; and the GRU
    # reads the question's left padding too.
    # Train: python -m keras_adahan.train --preset reference
    "reference": ModelConfig(
        image_size=256,
        conv_filters=(8, 8, 8),
        conv_kernel_sizes=(5, 5, 5),
        conv_strides=(1, 1, 1),
        pool_sizes=(3, 3, 3),
        pool_strides=(2, 2, 2),
        pooling="average",
        fuse_conv_pool=True,
        conv_batch_norm=False,
        embedding_dim=8,
        rnn="gru",
        rnn_units=8,
        fusion="add",
        fusion_units=(2,),
        variant="han",
        k=2,
        min_cells=1,  # AdaHAN: the reference has no floor; at least one cell always passes.
        squared_presence=True,
        aggregation="flatten",
        classifier_units=(),
        aggregate_norm=False,
    ),
    # 128x128 input; convs + batch norm + ReLU: 16, 32, 64 channels at stride 2 (kernels
    # 4, 4, 2) -> 16x16 = 256 cells, each cell's local features seeing ~14 px; then 2 x 64
    # 3x3 context convs seeing ~46 px; embedding 32 + GRU 32; gated fusion (local cell +
    # question through 1x1 convs (64, 64), times a sigmoid gate from context + question);
    # L2 presence; HAN keeping 10% of the cells (26) (AdaHAN: threshold 1/N, at least
    # as many); sum pooling + LayerNorm; MLP (64) -> answers. Why each choice:
    # docs/design_choices.md.
    # Train: python -m keras_adahan.train --preset default
    "default": ModelConfig(),
    # CLEVR (480x320 renders of 3-10 objects, questions of up to ~45 words): the default
    # preset's shape, wider, an LSTM as in the paper, k = 16% (the paper's smallest share).
    # --aggregation relational makes it HAN+RN.
    # Train: python -m keras_adahan.train --dataset clevr --preset clevr
    "clevr": ModelConfig(
        conv_filters=(32, 64, 128, 128, 128),
        max_question_length=48,
        embedding_dim=64,
        rnn="lstm",
        rnn_units=128,
        fusion_units=(128, 128),
        k=0.16,
        relational_units=(128, 128),
        classifier_units=(128,),
    ),
    # Sort-of-CLEVR (75x75, six objects), as kimhc6028/relational-networks trains its RN: 4 x
    # [conv 3x3, 24 channels, stride 2, batch norm, ReLU] -> 5x5 = 25 cells, g (4 x 256),
    # f (256, 256), each cell's coordinates; multiplicative fusion (README, Sort-of-CLEVR).
    # HAN+RN keeps k = 7 cells: 49 pairs, 7.8% of the 625 that RN over all cells computes.
    # Train: python -m keras_adahan.train --dataset sort_of_clevr --preset sort_of_clevr
    "sort_of_clevr": ModelConfig(
        image_size=75,
        conv_filters=(24, 24, 24, 24),
        conv_kernel_sizes=(3, 3, 3, 3),
        conv_strides=(2, 2, 2, 2),
        fusion="multiply",
        fusion_units=(64, 64),
        k=7,
        aggregation="relational",
        relational_units=(256, 256, 256, 256),
        classifier_units=(256, 256),
        cell_coordinates=True,
    ),
}


# The reference's function exactly (tests/test_reference_exact.py): `reference` with conv
# 5x5 'same' -> zero padding 1 -> average pooling 3/2 'valid', so the padding counts as in
# PyTorch's AvgPool2d(3, 2, padding=1), and the GRU reading the words only
# (layers.MaskedGRU). Loads the reference's weights: python -m
# keras_adahan.convert_reference. Slower to train than `reference` (full-size convs).
# Train: python -m keras_adahan.train --preset reference_exact
PRESETS["reference_exact"] = PRESETS["reference"].replace(
    fuse_conv_pool=False, count_pool_padding=True, skip_padding=True
)


def get_preset(name, **overrides):
    """The `ModelConfig` of preset `name`, with `overrides` applied (validated).

    Args:
        name: str. One of `PRESETS`, e.g. "default", "reference" or "reference_exact".
        **overrides: `ModelConfig` fields to change, e.g. `variant="adahan"`.

    Returns:
        A `ModelConfig`.
    """
    if name not in PRESETS:
        raise ValueError(
            f"`name` must be one of the presets {sorted(PRESETS)}, received {name!r}"
        )
    return PRESETS[name].replace(**overrides)
