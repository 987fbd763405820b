"""HAN and AdaHAN as one functional Keras model.

    image (B, S, S, 3) 0..255 ──image_encoder──> cells (B, G, G, C)
    question (B, L) int ids ─┐                        │
                             └──────answer_head───────┴──> {"answer", "presence", "mask"}

`answer_head`: embedding + unrolled GRU/LSTM -> question vector, broadcast to every cell and
fused with it (concat or add) -> 1x1 convs -> fused embedding per cell (B, N, D), N = G*G ->
presence = L2 norm per cell -> mask (HAN top-k, AdaHAN softmax threshold, or all ones) ->
aggregation over the kept cells (sum, relational or the reference's flatten head) -> MLP ->
answer logits. Cells are numbered row-major, `cell_boxes` gives their image rectangles.

`build_model(config)` returns the full model; `image_encoder` and `answer_head` are nested
functional models (`model.get_layer("image_encoder")`), so an image can be encoded once and
asked many questions. `build_training_model` does exactly that for training.
"""

import dataclasses
import math
import numbers

import keras
import numpy as np

from keras_adahan import layers as adahan_layers
from keras_adahan.layers.adahan_mask import check_adahan_arguments
from keras_adahan.layers.han_mask import check_k
from keras_adahan.layers.han_mask import num_kept_cells

VARIANTS = ("han", "adahan", "soft", "none")
AGGREGATIONS = ("sum", "relational", "flatten")
FUSIONS = ("concat", "add", "gated")
RNNS = ("gru", "lstm")
POOLINGS = ("average", "max")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Sizes and choices of a HAN / AdaHAN model. The defaults are the `default` preset.

    Tuples give one entry per layer. Change fields with `config.replace(**changes)` (or
    `dataclasses.replace`); every instance is validated, with errors naming the field.
    """

    # --- Image encoder: conv -> [batch norm] -> [pool] -> ReLU per layer, 'same' padding. ---
    # 128 px keeps a barn-scene animal a few cells wide at a quarter of 256 px's cost.
    image_size: int = 128
    # Stride-2 convs down to 16x16 (a cell's own features see ~14 px), then two 3x3 convs
    # at grid resolution, the context, that see ~46 px (an animal and the barn or hay
    # beside it); ~32M multiply-adds. Even kernels at stride 2 (4, 4, 2) centre each
    # cell's receptive field on the cell: 'same' 3x3 kernels at stride 2 shift it half a
    # pixel per layer, 3.5 px (half a cell) after three, off the object it should show.
    conv_filters: tuple = (16, 32, 64, 64, 64)
    conv_kernel_sizes: tuple = (4, 4, 2, 3, 3)
    conv_strides: tuple = (2, 2, 2, 1, 1)
    # Pooling after a conv: pool size per layer, 0 = none; () = no pooling at all.
    # The reference downsamples by average pooling 3/2 instead of strided convs.
    pool_sizes: tuple = ()
    pool_strides: tuple = ()
    pooling: str = "average"
    # Conv -> average pool computed as one strided conv (layers.ConvAveragePool2D): the
    # same function with PyTorch's border averaging (bar the first row and column), and
    # 2-3x faster on CPU, since the full-resolution conv output is never made.
    fuse_conv_pool: bool = False
    # Batch norm after each conv (before pooling and ReLU). Trained from scratch on
    # near-identical barn scenes, the plain conv stack stays at chance; the reference has none.
    conv_batch_norm: bool = True

    # --- Question encoder. ---
    # The barn questions use about twenty words; the trainer sets the tokenizer's size.
    vocab_size: int = 64
    # Longest barn question is 11 words; left-padded to this, the RNN is unrolled over it.
    max_question_length: int = 16
    embedding_dim: int = 32
    rnn: str = "gru"  # GRU as in the reference; "lstm" as in the paper.
    rnn_units: int = 32  # Three question types to tell apart: a small state is plenty.

    # --- Answers. ---
    num_answers: int = 4  # chicken, sheep, cow, pig.

    # --- Fusion of the question with every cell. ---
    # "concat" is the paper's; "add" (the reference's) needs rnn_units == C.
    fusion: str = "gated"
    # "gated": the fused embedding is a cell's LOCAL features (the encoder up to the last
    # `context_convs` convs, which see little beyond the cell) fused with the question,
    # scaled by a gate in (0, 1) computed from the question and the cell's wide CONTEXT
    # (the last `context_convs` convs). Only cells that show the answer carry it, so the
    # highest-presence cell lands on the object asked about (grounding), while the gate
    # can still use relations (on the roof, left of the hay) to pick it.
    context_convs: int = 2  # Used by "gated" fusion only.
    # 1x1 convs on the fused cells, ReLU between, the last one linear (its norm is the
    # presence, a linear layer lets any direction grow). ~2.6M multiply-adds at 16x16.
    fusion_units: tuple = (64, 64)

    # --- Hard attention. ---
    variant: str = "han"  # "han" | "adahan" | "soft" (baseline) | "none" (baseline).
    # HAN cells kept: int count or float share. 10% of 256 = 26 cells, room for up to
    # three animals to count on `randomized`: over 5 seeds HAN and AdaHAN average 96.7
    # and 97.2% there (with 13 HAN did not: a seed never learned to count; counting stays
    # seed-fragile, see README). Sparser than the paper's smallest (16%); a small k keeps
    # a relational aggregator cheap.
    k: numbers.Real = 0.1
    threshold: float = None  # AdaHAN softmax threshold; None = 1/N (the reference's).
    # AdaHAN floor; None: as many cells as HAN keeps (k). On barn_vqa/classic a floor of 1
    # plateaued at 87% validation accuracy (examples keeping 1-2 cells, none on the
    # animal, get no gradient to fix it); 4 reached 100% there, but on `randomized` kept a
    # median of 6 cells, too few to count (88.6% test); 13 (then = k) reached 95.5%. The
    # reference has none (1 here).
    min_cells: int = None
    # AdaHAN ceiling. With "relational" it also sets how many cells are paired: without
    # it AdaHAN (like "soft"/"none") pairs all N cells, N**2 pairs.
    max_cells: int = None
    squared_presence: bool = False  # The paper's L2 norm; the reference squares it.

    # --- Aggregation over the kept cells and classifier. ---
    aggregation: str = "sum"  # "sum" (paper) | "relational" (paper) | "flatten" (reference)
    relational_units: tuple = (64, 64)  # g-MLP of the relational module.
    classifier_units: tuple = (64,)  # Hidden widths of the answer MLP (ReLU).
    # LayerNorm on the aggregated vector: a sum over 26 or 256 cells (HAN vs none) or a
    # varying number (AdaHAN) then reaches the classifier at one scale. Not used by the
    # "flatten" head (the reference's, which has none).
    aggregate_norm: bool = True

    def __post_init__(self):
        for name in ("conv_filters", "conv_kernel_sizes", "conv_strides", "pool_sizes",
                     "pool_strides", "fusion_units", "relational_units", "classifier_units"):
            value = getattr(self, name)
            if isinstance(value, numbers.Integral):
                value = (value,)
            # Keep tuples (JSON gives lists back), so configs compare and hash.
            object.__setattr__(self, name, tuple(value))
        self._validate()

    def _validate(self):
        def positive(name, allow_zero=False):
            value = getattr(self, name)
            low = 0 if allow_zero else 1
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"`{name}` must be an int >= {low}, received {value!r}")

        def positives(name, allow_zero=False, allow_empty=False):
            values = getattr(self, name)
            low = 0 if allow_zero else 1
            if not values and not allow_empty:
                raise ValueError(f"`{name}` must not be empty, received {values}")
            for value in values:
                if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                    raise ValueError(
                        f"`{name}` must hold ints >= {low}, received {values}"
                    )

        def choice(name, allowed):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"`{name}` must be one of {allowed}, received {value!r}")

        for name in ("image_size", "vocab_size", "max_question_length", "embedding_dim",
                     "rnn_units", "num_answers"):
            positive(name)
        if self.vocab_size < 2:
            raise ValueError(
                "`vocab_size` must be >= 2 (0 = padding, 1 = out-of-vocabulary), "
                f"received {self.vocab_size}"
            )
        positives("conv_filters")
        positives("conv_kernel_sizes")
        positives("conv_strides")
        positives("pool_sizes", allow_zero=True, allow_empty=True)
        positives("pool_strides", allow_empty=True)
        positives("fusion_units")
        positives("relational_units")
        positives("classifier_units", allow_empty=True)
        num_convs = len(self.conv_filters)
        for name in ("conv_kernel_sizes", "conv_strides"):
            if len(getattr(self, name)) != num_convs:
                raise ValueError(
                    f"`{name}` must have one entry per conv layer ({num_convs}, as "
                    f"`conv_filters`), received {getattr(self, name)}"
                )
        for name in ("pool_sizes", "pool_strides"):
            if getattr(self, name) and len(getattr(self, name)) != num_convs:
                raise ValueError(
                    f"`{name}` must be empty or have one entry per conv layer "
                    f"({num_convs}), received {getattr(self, name)}"
                )
        if bool(self.pool_sizes) != bool(self.pool_strides):
            raise ValueError(
                "`pool_sizes` and `pool_strides` must be both empty or both set, received "
                f"{self.pool_sizes} and {self.pool_strides}"
            )
        choice("pooling", POOLINGS)
        choice("rnn", RNNS)
        choice("fusion", FUSIONS)
        choice("variant", VARIANTS)
        choice("aggregation", AGGREGATIONS)
        positive("context_convs", allow_zero=True)
        if self.fusion == "gated" and not 1 <= self.context_convs < num_convs:
            raise ValueError(
                "`fusion='gated'` needs `context_convs` in [1, number of convs - 1] = "
                f"[1, {num_convs - 1}], received {self.context_convs}"
            )
        if self.fusion == "gated":
            context = slice(num_convs - self.context_convs, None)
            if any(s != 1 for s in self.conv_strides[context]) or any(self.pool_sizes[context]):
                raise ValueError(
                    "`fusion='gated'` needs its context convs (the last `context_convs`) at "
                    "stride 1 without pooling, so local and context cells line up; received "
                    f"conv_strides={self.conv_strides}, pool_sizes={self.pool_sizes}"
                )
        if self.fusion == "add" and self.rnn_units != self.conv_filters[-1]:
            raise ValueError(
                "`fusion='add'` adds the question vector to every cell, so `rnn_units` must "
                f"equal the last of `conv_filters` ({self.conv_filters[-1]}), received "
                f"{self.rnn_units}"
            )
        if self.fuse_conv_pool and (
            self.pooling != "average" or self.conv_batch_norm
            or any(s != 1 for s, p in zip(self.conv_strides, self.pool_sizes) if p)
            or any(k % 2 == 0 for k, p in zip(self.conv_kernel_sizes, self.pool_sizes) if p)
            or any(p % 2 == 0 for p in self.pool_sizes if p)
        ):
            raise ValueError(
                "`fuse_conv_pool` needs average pooling, no batch norm, and odd conv and pool "
                "sizes with conv stride 1 where it pools; received pooling="
                f"{self.pooling!r}, conv_batch_norm={self.conv_batch_norm}, conv_strides="
                f"{self.conv_strides}, conv_kernel_sizes={self.conv_kernel_sizes}, "
                f"pool_sizes={self.pool_sizes}"
            )
        for name in ("squared_presence", "conv_batch_norm", "aggregate_norm", "fuse_conv_pool"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be a bool, received {getattr(self, name)!r}")
        num_cells = self.num_cells
        check_k(self.k)
        num_kept_cells(self.k, num_cells)  # Raises for an int k > N.
        check_adahan_arguments(self.threshold, self.adahan_min_cells, self.max_cells, num_cells)

    @property
    def adahan_min_cells(self):
        """AdaHAN's floor in cells: `min_cells`, or HAN's k cells when it is None."""
        if self.min_cells is None:
            return num_kept_cells(self.k, self.num_cells)
        return self.min_cells

    @property
    def context_layers(self):
        """Convs at the end of the encoder that form the gate's context (gated fusion)."""
        return self.context_convs if self.fusion == "gated" else 0

    @property
    def grid_size(self):
        """Side G of the cell grid the image encoder outputs."""
        return grid_size(self)

    @property
    def num_cells(self):
        """N = G * G, the number of cells."""
        return self.grid_size**2

    def replace(self, **changes):
        """A copy with `changes` applied; unknown field names raise a `ValueError`."""
        fields = {field.name for field in dataclasses.fields(self)}
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise ValueError(
                f"Unknown ModelConfig field(s) {unknown}; allowed: {sorted(fields)}"
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """The fields as a JSON-friendly dict (tuples become lists)."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values):
        """Inverse of `to_dict`; unknown keys raise a `ValueError`."""
        return cls().replace(**values) if values else cls()


def grid_size(config):
    """Side G of the square cell grid for `config` ('same' padding: each stride rounds up)."""
    size = config.image_size
    for index, stride in enumerate(config.conv_strides):
        size = math.ceil(size / stride)
        if config.pool_sizes and config.pool_sizes[index]:
            size = math.ceil(size / config.pool_strides[index])
    return size


def cell_boxes(grid_size, image_size=None):
    """The image rectangle of every cell, in the order of the `presence`/`mask` outputs.

    Cell `n = i * G + j` (row `i`, column `j`) of a `G x G` grid covers the pixels
    `[i*S/G, (i+1)*S/G) x [j*S/G, (j+1)*S/G)` of an `S x S` image.

    Args:
        grid_size: int. G, e.g. `grid_size(config)` or `config.grid_size`.
        image_size: int or `None`. With `None`, boxes are normalized to [0, 1]; with S,
            they are in pixels. Defaults to `None`.

    Returns:
        float32 array of shape `(G * G, 4)`: `(ymin, xmin, ymax, xmax)` per cell.
    """
    if isinstance(grid_size, bool) or not isinstance(grid_size, numbers.Integral) or grid_size < 1:
        raise ValueError(f"`grid_size` must be a positive int, received {grid_size!r}")
    edges = np.arange(grid_size + 1, dtype=np.float64) / grid_size
    if image_size is not None:
        edges = edges * image_size
    i, j = np.meshgrid(np.arange(grid_size), np.arange(grid_size), indexing="ij")
    i, j = i.reshape(-1), j.reshape(-1)  # Row-major, like the (B, G, G, D) -> (B, N, D) reshape.
    return np.stack([edges[i], edges[j], edges[i + 1], edges[j + 1]], axis=1).astype("float32")


def build_image_encoder(config):
    """image (B, S, S, 3) raw 0..255 -> cells (B, G, G, C). A functional `keras.Model`."""
    image = keras.Input((config.image_size, config.image_size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(image)
    pooling_layer = {
        "average": keras.layers.AveragePooling2D,
        "max": keras.layers.MaxPooling2D,
    }[config.pooling]
    for index, (filters, kernel_size, strides) in enumerate(
        zip(config.conv_filters, config.conv_kernel_sizes, config.conv_strides)
    ):
        pools = bool(config.pool_sizes and config.pool_sizes[index])
        if pools and config.fuse_conv_pool:
            x = adahan_layers.ConvAveragePool2D(
                filters, kernel_size, config.pool_sizes[index], config.pool_strides[index],
                name=f"conv_pool_{index + 1}",
            )(x)
        else:
            x = keras.layers.Conv2D(
                filters, kernel_size, strides=strides, padding="same",
                use_bias=not config.conv_batch_norm, name=f"conv_{index + 1}",
            )(x)
            if config.conv_batch_norm:
                # Momentum 0.9: the moving statistics catch up within a few dozen steps,
                # so validation during short runs reflects the model being trained.
                x = keras.layers.BatchNormalization(
                    momentum=0.9, name=f"batch_norm_{index + 1}"
                )(x)
            if pools:
                x = pooling_layer(
                    config.pool_sizes[index], strides=config.pool_strides[index],
                    padding="same", name=f"pool_{index + 1}",
                )(x)
        x = keras.layers.ReLU(name=f"relu_{index + 1}")(x)  # (B, G_i, G_i, C_i)
        if index == len(config.conv_filters) - 1 - config.context_layers:
            local = x  # Gated fusion: what the cell itself shows.
    if config.context_layers:
        # (B, G, G, C_local + C): local features, then their wide context.
        x = keras.layers.Concatenate(name="local_and_context")([local, x])
    return keras.Model(image, x, name="image_encoder")


def cell_channels(config):
    """Channels C of the image encoder's output cells."""
    local = config.conv_filters[-1 - config.context_layers] if config.context_layers else 0
    return local + config.conv_filters[-1]


def build_answer_head(config):
    """(cells (B, G, G, C), question (B, L)) -> {"answer", "presence", "mask"}."""
    grid, num_cells = config.grid_size, config.num_cells
    cells = keras.Input((grid, grid, cell_channels(config)), name="cells")
    question = keras.Input((config.max_question_length,), dtype="int32", name="question")

    # Question: left-padded ids, so the unrolled RNN reads the words last; no masking.
    words = keras.layers.Embedding(
        config.vocab_size, config.embedding_dim, name="word_embedding"
    )(question)  # (B, L, E)
    rnn_layer = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}[config.rnn]
    question_vector = rnn_layer(config.rnn_units, unroll=True, name="question_rnn")(words)

    # Fusion: the question vector on every cell, then 1x1 convs.
    on_cells = adahan_layers.BroadcastToCells(name="broadcast_question")(
        question_vector, cells
    )  # (B, G, G, U)
    gate = None
    if config.fusion == "gated":
        local, context = adahan_layers.SplitChannels(
            config.conv_filters[-1 - config.context_layers], name="split_local_context"
        )(cells)
        x = keras.layers.Concatenate(name="fuse_concat")([local, on_cells])
        g = keras.layers.Concatenate(name="gate_concat")([context, on_cells])
        g = keras.layers.Conv2D(config.fusion_units[0], 1, activation="relu", name="gate_1")(g)
        gate = keras.layers.Conv2D(1, 1, activation="sigmoid", name="gate")(g)  # (B, G, G, 1)
    elif config.fusion == "concat":
        x = keras.layers.Concatenate(name="fuse_concat")([cells, on_cells])
    else:
        x = keras.layers.Add(name="fuse_add")([cells, on_cells])
    for index, units in enumerate(config.fusion_units):
        last = index == len(config.fusion_units) - 1
        x = keras.layers.Conv2D(
            units, 1, activation=None if last else "relu", name=f"fusion_{index + 1}"
        )(x)
    if gate is not None:
        x = keras.layers.Multiply(name="gated_cells")([x, gate])  # (B, G, G, D)
    fused = keras.layers.Reshape(
        (num_cells, config.fusion_units[-1]), name="fused_cells"
    )(x)  # (B, G, G, D) -> (B, N, D), row-major like `cell_boxes`.

    # Hard attention.
    presence = adahan_layers.L2Presence(squared=config.squared_presence, name="presence")(
        fused
    )  # (B, N)
    max_kept = None  # Cells the relational module gathers.
    if config.variant == "han":
        mask = adahan_layers.HANMask(config.k, name="mask")(presence)
        max_kept = num_kept_cells(config.k, num_cells)
    elif config.variant == "adahan":
        mask = adahan_layers.AdaHANMask(
            config.threshold, config.adahan_min_cells, config.max_cells, name="mask"
        )(presence)
        max_kept = config.max_cells
    else:
        mask = adahan_layers.KeepAllMask(name="mask")(presence)
    # What the aggregator weights cells with: the hard mask, or soft attention weights.
    cell_weights = mask
    if config.variant == "soft" and config.aggregation != "sum":
        cell_weights = adahan_layers.SoftAttentionWeights(name="soft_attention")(fused)

    # Aggregation over the kept cells, then the classifier.
    hidden_units = list(config.classifier_units)
    if config.aggregation == "flatten":
        # The reference head: its Dense is the classifier's first layer.
        units = hidden_units.pop(0) if hidden_units else config.num_answers
        x = adahan_layers.FlattenHead(
            units,
            activation="relu" if config.classifier_units else None,
            name="aggregate" if config.classifier_units else "answer_logits",
        )(fused, cell_weights)
    elif config.variant == "soft":  # and aggregation == "sum"
        x = adahan_layers.SoftAttentionPooling(name="aggregate")(fused)
    elif config.aggregation == "sum":
        x = adahan_layers.MaskedSumPooling(name="aggregate")(fused, cell_weights)
    else:
        x = adahan_layers.RelationalAggregation(
            config.relational_units, max_cells=max_kept, name="aggregate"
        )(fused, cell_weights)
    if config.aggregate_norm and config.aggregation != "flatten":
        x = keras.layers.LayerNormalization(name="aggregate_norm")(x)
    for index, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"classifier_{index + 1}")(x)
    if config.aggregation != "flatten" or config.classifier_units:
        x = keras.layers.Dense(config.num_answers, name="answer_logits")(x)

    outputs = {"answer": x, "presence": presence, "mask": mask}
    return keras.Model({"cells": cells, "question": question}, outputs, name="answer_head")


def build_model(config=None):
    """The VQA model for `config` (default: `ModelConfig()`, the `default` preset).

    Inputs (a dict): `image` float32 (B, S, S, 3), raw pixels 0..255; `question` int32
    (B, L), token ids left-padded with 0, 1 = out-of-vocabulary.
    Outputs (a dict): `answer` logits (B, num_answers); `presence` (B, N) float;
    `mask` (B, N) float 0/1, the kept cells (all ones for "soft" and "none").
    Cell n of the outputs covers `cell_boxes(config.grid_size)[n]`.

    Its nested models `image_encoder` and `answer_head` are `model.get_layer(name)`.
    """
    config = ModelConfig() if config is None else config
    image_encoder = build_image_encoder(config)
    answer_head = build_answer_head(config)
    image = keras.Input((config.image_size, config.image_size, 3), name="image")
    question = keras.Input((config.max_question_length,), dtype="int32", name="question")
    cells = image_encoder(image)  # (B, G, G, C)
    outputs = answer_head({"cells": cells, "question": question})
    return keras.Model(
        {"image": image, "question": question}, outputs, name=f"{config.variant}_vqa"
    )


def build_training_model(model, questions_per_image):
    """A model sharing `model`'s layers that encodes each image once for all its questions.

    Inputs (a dict): `image` (B, S, S, 3) and `questions` int32 (B, Q, L), Q =
    `questions_per_image`. Output: answer logits (B, Q, num_answers), to train with
    labels (B, Q). The image's cells are repeated Q times and the head runs on B*Q
    (cells, question) pairs: the same logits as `model` on each question.
    """
    if (isinstance(questions_per_image, bool)
            or not isinstance(questions_per_image, numbers.Integral)
            or questions_per_image < 1):
        raise ValueError(
            f"`questions_per_image` must be a positive int, received {questions_per_image!r}"
        )
    image_encoder = model.get_layer("image_encoder")
    answer_head = model.get_layer("answer_head")
    image = keras.Input(image_encoder.input.shape[1:], name="image")
    question_length = answer_head.input["question"].shape[1]
    questions = keras.Input(
        (questions_per_image, question_length), dtype="int32", name="questions"
    )
    cells = image_encoder(image)  # (B, G, G, C)
    cells = adahan_layers.RepeatBatch(questions_per_image, name="repeat_cells")(cells)
    flat_questions = adahan_layers.MergeLeadingAxes(name="flatten_questions")(questions)
    outputs = answer_head({"cells": cells, "question": flat_questions})  # (B*Q, ...)
    answer = adahan_layers.SplitLeadingAxis(questions_per_image, name="answer")(
        outputs["answer"]
    )  # (B*Q, A) -> (B, Q, A)
    return keras.Model(
        {"image": image, "questions": questions}, answer, name=f"{model.name}_training"
    )
