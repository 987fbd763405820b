"""Named model configurations: `get_preset(name, **overrides)`.

- `reference`: the PyTorch reference (PyTorch-AdaHAN) layer for layer.
  Train: `python -m keras_adahan.train --preset reference`
- `default`: tuned for accuracy and speed on 2 CPU cores (the `ModelConfig` defaults).
  Train: `python -m keras_adahan.train --preset default`

Both take `--variant han|adahan|soft|none`; the trainer sets `vocab_size`, `num_answers`
and `max_question_length` from the dataset.
"""

from keras_adahan.config import ModelConfig

PRESETS = {
    # The PyTorch reference exactly: 256x256 input; 3 x [conv 5x5, 8 channels, 'same'
    # padding -> average pooling 3/2 'same' -> ReLU] -> 32x32 = 1024 cells; embedding 8 +
    # GRU 8; the question vector ADDED to every cell; a linear 1x1 conv to 2 channels;
    # squared-L2 presence; HAN with k = 2 cells; its head: the 2 channels summed per cell,
    # the masked 1024-vector -> Dense(num_answers).
    # One difference: Keras' 'same' average pooling leaves the zero padding out of the
    # border averages, PyTorch's AvgPool2d(3, 2, padding=1) counts it.
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
    # --set aggregation=relational (or --aggregation relational) makes it HAN+RN.
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
}


def get_preset(name, **overrides):
    """The `ModelConfig` of preset `name`, with `overrides` applied (validated).

    Args:
        name: str. One of `PRESETS`: "reference" or "default".
        **overrides: `ModelConfig` fields to change, e.g. `variant="adahan"`.

    Returns:
        A `ModelConfig`.
    """
    if name not in PRESETS:
        raise ValueError(
            f"`name` must be one of the presets {sorted(PRESETS)}, received {name!r}"
        )
    return PRESETS[name].replace(**overrides)
