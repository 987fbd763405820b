"""HAN and AdaHAN as one functional Keras model.

    image (B, S, S, 3) 0..255 ──image_encoder──> cells (B, G, G, C)
    question (B, L) int ids ─┐                        │
                             └──────answer_head───────┴──> {"answer", "presence", "mask"}

`answer_head`: embedding + unrolled GRU/LSTM -> question vector, broadcast to every cell and
fused with it (concat or add) -> 1x1 convs -> fused embedding per cell (B, N, D), N = G*G ->
presence = L2 norm per cell -> mask (HAN top-k, AdaHAN softmax threshold, or all ones) ->
aggregation over the kept cells (sum, relational or the reference's flatten head) -> MLP ->
answer logits. Cells are numbered row-major (`keras_adahan.geometry`).

`VQAModel(config)` (or `build_model(config)`) is the full model; it carries its
`ModelConfig` (`model.config`, saved in the `.keras` file) and its geometry
(`model.grid_size`, `model.cell_edges`, `model.cell_boxes()`). `image_encoder` and
`answer_head` are nested functional models (`model.get_layer("image_encoder")`), so an image
can be encoded once and asked many questions; `build_training_model` does exactly that for
training.
"""

import collections

import keras

from keras_adahan import geometry
from keras_adahan import layers as adahan_layers
from keras_adahan.config import ModelConfig
from keras_adahan.layers.arguments import positive_int
from keras_adahan.layers.han_mask import num_kept_cells


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
                x = adahan_layers.BatchNormalization(
                    momentum=0.9, name=f"batch_norm_{index + 1}"
                )(x)
            if pools and config.count_pool_padding:
                # PyTorch's AvgPool2d(p, s, padding=p//2): the zeros count in the average.
                x = keras.layers.ZeroPadding2D(
                    config.pool_sizes[index] // 2, name=f"pool_padding_{index + 1}"
                )(x)
                x = keras.layers.AveragePooling2D(
                    config.pool_sizes[index], strides=config.pool_strides[index],
                    padding="valid", name=f"pool_{index + 1}",
                )(x)
            elif pools:
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


def build_answer_head(config):
    """(cells (B, G, G, C), question (B, L)) -> {"answer", "presence", "mask"}."""
    grid, num_cells = config.grid_size, config.num_cells
    cells_input = keras.Input((grid, grid, config.cell_channels), name="cells")
    question = keras.Input((config.max_question_length,), dtype="int32", name="question")

    # Question: left-padded ids, so the unrolled RNN reads the words last. With
    # `skip_padding` the padding (id 0) is masked and leaves the GRU's state as it was.
    words = keras.layers.Embedding(
        config.vocab_size, config.embedding_dim, mask_zero=config.skip_padding,
        name="word_embedding",
    )(question)  # (B, L, E)
    if config.skip_padding:
        question_vector = adahan_layers.MaskedGRU(config.rnn_units, name="question_rnn")(words)
    else:
        rnn_layer = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}[config.rnn]
        question_vector = rnn_layer(config.rnn_units, unroll=True, name="question_rnn")(words)

    cells = cells_input
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
    elif config.fusion == "multiply":
        # Hadamard product of projections (MLB, Kim et al., 2017), with no biases here or
        # below: a cell with no features fuses to zero (presence 0), whatever the question.
        x = keras.layers.Multiply(name="fuse_multiply")([
            keras.layers.Conv2D(config.fusion_units[0], 1, use_bias=False,
                                name="cell_projection")(cells),
            keras.layers.Conv2D(config.fusion_units[0], 1, use_bias=False,
                                name="question_projection")(on_cells),
        ])
    else:
        x = keras.layers.Add(name="fuse_add")([cells, on_cells])
    for index, units in enumerate(config.fusion_units):
        last = index == len(config.fusion_units) - 1
        x = keras.layers.Conv2D(
            units, 1, activation=None if last else "relu",
            use_bias=config.fusion != "multiply", name=f"fusion_{index + 1}",
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

    # Aggregation over the kept cells, then the classifier. Relation networks give each
    # object its place: gathered or summed, cells no longer say where they were.
    features = fused
    if config.relational_image_cells:
        image_cells = keras.layers.Reshape(
            (num_cells, config.cell_channels), name="relational_image_cells")(cells)
        features = keras.layers.Concatenate(name="fused_and_image_cells")(
            [fused, image_cells])  # (B, N, D + C)
    if config.cell_coordinates:
        features = adahan_layers.AppendCellCoordinates(name="cell_coordinates")(features)
    hidden_units = list(config.classifier_units)
    if config.aggregation == "flatten":
        # The reference head: its Dense is the classifier's first layer.
        units = hidden_units.pop(0) if hidden_units else config.num_answers
        x = adahan_layers.FlattenHead(
            units,
            activation="relu" if config.classifier_units else None,
            name="aggregate" if config.classifier_units else "answer_logits",
        )(features, cell_weights)
    elif config.variant == "soft" and config.aggregation == "sum":
        x = adahan_layers.SoftAttentionPooling(name="aggregate")(features)
    elif config.aggregation == "sum":
        x = adahan_layers.MaskedSumPooling(name="aggregate")(features, cell_weights)
    else:
        relational = adahan_layers.RelationalAggregation(
            config.relational_units, max_cells=max_kept, name="aggregate")
        if config.relational_question:
            x = relational(features, cell_weights, question=question_vector)
        else:
            x = relational(features, cell_weights)
    if config.aggregate_norm and config.aggregation != "flatten":
        x = keras.layers.LayerNormalization(name="aggregate_norm")(x)
    for index, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"classifier_{index + 1}")(x)
    if config.aggregation != "flatten" or config.classifier_units:
        x = keras.layers.Dense(config.num_answers, name="answer_logits")(x)

    outputs = {"answer": x, "presence": presence, "mask": mask}
    if config.soft_head_weight:
        # For the training-only soft head (`build_training_model`): the image's cells (not
        # fused with the question) averaged by softmax(presence), beside the question, so
        # the question reaches its answer only through where presence puts the weight.
        image_cells = keras.layers.Reshape(
            (num_cells, config.cell_channels), name="soft_head_cells"
        )(cells)
        if config.cell_coordinates:
            image_cells = adahan_layers.AppendCellCoordinates(
                name="soft_head_coordinates")(image_cells)
        weights = keras.layers.Softmax(name="soft_head_weights")(presence)
        pooled = adahan_layers.MaskedSumPooling(name="soft_head_pool")(image_cells, weights)
        outputs["soft_head_input"] = keras.layers.Concatenate(name="soft_head_input")(
            [pooled, question_vector])
    return keras.Model({"cells": cells_input, "question": question}, outputs,
                       name="answer_head")


class SplitAnswerHead:
    """A model's answer head split inside its first fusion layer, for "encode once, ask many".

    That layer is linear in the cell and the question vector together (a 1x1 conv over their
    concatenation or sum; `multiply`: a projection of each), so the cells' share of it does
    not depend on the question and is computed once per image:

        cells (B, G, G, C) --encode_cells--> encoded (B, G, G, P)
        (encoded, question (B, L)) --split_head--> {"answer", "presence", "mask"}

    `split_head(encoded, question)` adds the question's share (one vector per question,
    broadcast to the cells) and runs the rest of the head: the same function as the answer
    head up to float rounding, without the cells' share of the first fusion layer (about half
    the head's multiply-adds in the default preset). The layers and weights are the model's.
    Where the relational module reads the image's cells too (`relational_image_cells`), they
    are the last part of the shares and of `encoded`, passed through unchanged.
    Export serves it (`encode`, `answer`); `build_training_model` trains through it, with the
    shares as a list (`cell_shares`, `answer_from_shares`) rather than one tensor.

    Args:
        model: a `VQAModel`.
    """

    def __init__(self, model):
        config = model.config
        head = model.get_layer("answer_head")
        layer = head.get_layer
        channels = config.cell_channels
        if config.fusion == "gated":
            local = config.conv_filters[-1 - config.context_layers]
            fusion, gate = layer("fusion_1"), layer("gate_1")
            self._parts = [_FusionPart(fusion, local, fusion, local, fusion, False),
                           _FusionPart(gate, channels - local, gate, channels - local,
                                       gate, False)]
        elif config.fusion == "multiply":
            self._parts = [_FusionPart(layer("cell_projection"), channels,
                                       layer("question_projection"), 0,
                                       layer("fuse_multiply"), True)]
        else:  # concat: [cells, question] rows; add: the same rows read cells + question.
            fusion = layer("fusion_1")
            self._parts = [_FusionPart(fusion, channels, fusion,
                                       channels if config.fusion == "concat" else 0,
                                       fusion, False)]
        self._question_vector = keras.Model(head.input["question"],
                                            layer("question_rnn").output)
        rest_inputs = [part.output_layer.output for part in self._parts]
        # The relational module may read the question vector too.
        self._rest_reads_question = (config.aggregation == "relational"
                                     and config.relational_question)
        if self._rest_reads_question:
            rest_inputs.append(layer("question_rnn").output)
        self._rest_reads_cells = config.relational_image_cells
        if self._rest_reads_cells:
            rest_inputs.append(head.input["cells"])
        self._rest = keras.Model(rest_inputs, {key: head.output[key]
                                               for key in ("answer", "presence", "mask")})
        self._share_sizes = [part.cell_layer.filters for part in self._parts]
        if self._rest_reads_cells:
            self._share_sizes.append(channels)
        self.encoded_shape = (config.grid_size, config.grid_size, sum(self._share_sizes))

    def cell_shares(self, cells):
        """cells (B, G, G, C), the image encoder's output -> each part's share, a list of
        (B, G, G, P_i), then the cells themselves if the relational module reads them."""
        # Split, not sliced: TensorFlow's gradient of a slice is slow on CPUs (SplitChannels).
        pieces = _split(cells, [part.cell_channels for part in self._parts])
        shares = []
        for piece, part in zip(pieces, self._parts):
            kernel = part.cell_layer.kernel[0, 0, :part.cell_channels]
            share = keras.ops.matmul(piece, keras.ops.cast(kernel, piece.dtype))
            if part.cell_layer.use_bias:
                share = share + keras.ops.cast(part.cell_layer.bias, piece.dtype)
            shares.append(share)
        if self._rest_reads_cells:
            shares.append(cells)
        return shares

    def encode_cells(self, cells):
        """cells (B, G, G, C), the image encoder's output -> encoded (B, G, G, P)."""
        shares = self.cell_shares(cells)
        return keras.ops.concatenate(shares, axis=-1) if len(shares) > 1 else shares[0]

    def __call__(self, encoded, question):
        """encoded (B, G, G, P), question (B, L) -> the answer head's outputs."""
        return self.answer_from_shares(_split(encoded, self._share_sizes), question)

    def answer_from_shares(self, shares, question, training=False):
        """`cell_shares` (for as many rows as `question` has), question (B, L) -> the answer
        head's outputs."""
        question_vector = self._question_vector(question, training=training)
        vector = question_vector[:, None, None, :]
        cut = []
        for share, part in zip(shares, self._parts):  # Image cells, if any, come last.
            kernel = part.question_layer.kernel[0, 0, part.question_row:]
            question_share = keras.ops.matmul(vector, keras.ops.cast(kernel, vector.dtype))
            cut.append(share * question_share if part.multiply
                       else part.cell_layer.activation(share + question_share))
        if self._rest_reads_question:
            cut.append(question_vector)
        if self._rest_reads_cells:
            cut.append(shares[-1])
        return self._rest(cut, training=training)


# One layer of the first fusion, split: `cell_layer`'s kernel rows 0 .. `cell_channels` read
# this part's cell channels (the parts take the cells' channels in order); `question_layer`'s
# rows from `question_row` read the question vector; the rest of the head reads
# `output_layer`'s output; the two shares multiply (`multiply`) or add, with `cell_layer`'s
# bias and activation.
_FusionPart = collections.namedtuple(
    "_FusionPart",
    "cell_layer cell_channels question_layer question_row output_layer multiply")


def _split(x, sizes):
    """`x` split along its last axis into parts of `sizes` channels (a list)."""
    if len(sizes) == 1:
        return [x]
    boundaries = [sum(sizes[:i + 1]) for i in range(len(sizes) - 1)]
    return keras.ops.split(x, boundaries, axis=-1)


@keras.saving.register_keras_serializable(package="keras_adahan")
class VQAModel(keras.Model):
    """The VQA model of a `ModelConfig`: a functional model that carries its config.

    Inputs (a dict): `image` float32 (B, S, S, 3), raw pixels 0..255; `question` int32
    (B, L), token ids left-padded with 0, 1 = out-of-vocabulary.
    Outputs (a dict): `answer` logits (B, num_answers); `presence` (B, N) float;
    `mask` (B, N) float 0/1, the kept cells (all ones for "soft" and "none").
    Cell n of the outputs covers `model.cell_boxes()[n]`.

    As keras-hub's backbones do, `get_config()` holds the constructor arguments (the
    `ModelConfig` as a dict), so `keras.models.load_model` rebuilds the same graph and
    `model.config` is there after loading.

    Args:
        config: `ModelConfig` or its dict. Defaults to `ModelConfig()` (the `default` preset).
        **kwargs: `keras.Model` arguments (`name`, `trainable`).

    Example:

    ```python
    model = VQAModel(get_preset("default", variant="adahan"))
    model.config.k, model.grid_size, model.cell_boxes(model.config.image_size)[0]
    ```
    """

    def __init__(self, config=None, **kwargs):
        if config is None:
            config = ModelConfig()
        elif isinstance(config, dict):
            config = ModelConfig.from_dict(config)
        image_encoder = build_image_encoder(config)
        answer_head = build_answer_head(config)
        image = keras.Input((config.image_size, config.image_size, 3), name="image")
        question = keras.Input((config.max_question_length,), dtype="int32", name="question")
        cells = image_encoder(image)  # (B, G, G, C)
        outputs = answer_head({"cells": cells, "question": question})
        outputs = {key: outputs[key] for key in ("answer", "presence", "mask")}
        kwargs.setdefault("name", f"{config.variant}_vqa")
        super().__init__({"image": image, "question": question}, outputs, **kwargs)
        self.config = config

    @property
    def grid_size(self):
        """Side G of the cell grid."""
        return self.config.grid_size

    @property
    def cell_edges(self):
        """`(G + 1,)` normalized edges of the cells along either axis
        (`keras_adahan.geometry.cell_edges`)."""
        return geometry.cell_edges(self.config)

    def cell_boxes(self, image_size=None):
        """`(N, 4)` `(ymin, xmin, ymax, xmax)` of every cell, normalized or, with
        `image_size`, in pixels of an image of that size (see `keras_adahan.geometry`)."""
        return geometry.cell_boxes(self.grid_size, image_size, self.cell_edges)

    def get_config(self):
        return {"config": self.config.to_dict(), "name": self.name,
                "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_model(config=None):
    """The `VQAModel` of `config` (default: `ModelConfig()`, the `default` preset)."""
    return VQAModel(config)


def build_training_model(model, questions_per_image):
    """A model sharing `model`'s weights that encodes each image once for all its questions.

    Inputs (a dict): `image` (B, S, S, 3) and `questions` int32 (B, Q, L), Q =
    `questions_per_image`. Output: answer logits (B, Q, num_answers), to train with
    labels (B, Q): the same logits as `model` on each question. The image is encoded once,
    and the cells' share of the head's first fusion layer is computed once
    (`SplitAnswerHead`) and repeated for the image's Q questions (`EncodeOnceTrainingModel`).

    With `model.config.soft_head_weight` it is a `SoftHeadTrainingModel` whose outputs are
    `(answer, soft_answer)`, the second from a head whose weights exist only here (not in
    `model`, so not in its saved file or exports). The soft head reads the cells themselves,
    so there the cells are repeated and the whole answer head runs per question.
    """
    questions_per_image = positive_int("questions_per_image", questions_per_image)
    config = model.config
    if not config.soft_head_weight:
        return EncodeOnceTrainingModel(model, questions_per_image,
                                       name=f"{model.name}_training")
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
    inputs = {"image": image, "questions": questions}
    # The soft head: the image's cells averaged by softmax(presence), and the question
    # (`build_answer_head`), classified.
    x = outputs["soft_head_input"]
    for index, units in enumerate(config.classifier_units):
        x = keras.layers.Dense(units, activation="relu", name=f"soft_head_{index + 1}")(x)
    x = keras.layers.Dense(config.num_answers, name="soft_head_logits")(x)
    soft_answer = adahan_layers.SplitLeadingAxis(questions_per_image, name="soft_answer")(x)
    return SoftHeadTrainingModel(inputs, (answer, soft_answer), config.soft_head_weight,
                                 name=f"{model.name}_training")


class EncodeOnceTrainingModel(keras.Model):
    """`model` trained on B images with Q questions each, (B, S, S, 3) and (B, Q, L) ->
    answer logits (B, Q, A).

    Each image is encoded once, and the cells' share of the head's first fusion layer is
    computed once and repeated for its Q questions (`SplitAnswerHead`); the rest of the head
    runs per question. Its weights are `model`'s (the image encoder's, then the answer
    head's, as `model.trainable_variables` orders them).

    Args:
        model: a `VQAModel`.
        questions_per_image: int, Q.
        **kwargs: `keras.Model` arguments (`name`).
    """

    def __init__(self, model, questions_per_image, **kwargs):
        super().__init__(**kwargs)
        self.image_encoder = model.get_layer("image_encoder")
        self.answer_head = model.get_layer("answer_head")
        self.split_head = SplitAnswerHead(model)  # Not a layer: its models add no weights.
        self.repeat_shares = adahan_layers.RepeatBatch(questions_per_image)
        self.flatten_questions = adahan_layers.MergeLeadingAxes()
        self.split_answers = adahan_layers.SplitLeadingAxis(questions_per_image)
        # Built: its weights are the model's and exist (backups load before the first step).
        self.built = True

    def call(self, inputs, training=False):
        cells = self.image_encoder(inputs["image"], training=training)  # (B, G, G, C)
        shares = [self.repeat_shares(share) for share in self.split_head.cell_shares(cells)]
        questions = self.flatten_questions(inputs["questions"])  # (B*Q, L)
        outputs = self.split_head.answer_from_shares(shares, questions, training=training)
        return self.split_answers(outputs["answer"])  # (B*Q, A) -> (B, Q, A)


class SoftHeadTrainingModel(keras.Model):
    """A training model with outputs `(answer, soft_answer)` logits, both (B, Q, A).

    Loss: the compiled loss on `answer` plus `soft_head_weight` times the same loss on
    `soft_answer` (`ModelConfig.soft_head_weight`); metrics are the answer's.
    """

    def __init__(self, inputs, outputs, soft_head_weight, **kwargs):
        super().__init__(inputs, outputs, **kwargs)
        self.soft_head_weight = float(soft_head_weight)
        self.soft_head_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        answer, soft_answer = y_pred
        loss = super().compute_loss(x, y, answer, sample_weight, training)
        return loss + self.soft_head_weight * self.soft_head_loss(y, soft_answer, sample_weight)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, y_pred[0], sample_weight)
