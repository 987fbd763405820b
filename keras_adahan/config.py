"""`ModelConfig`: the sizes and choices of a HAN / AdaHAN model, validated.

The defaults are the `default` preset (see `keras_adahan.presets`). Why each default is
what it is, with the runs that chose it: docs/design_choices.md.
"""

import dataclasses
import numbers

import numpy as np

from keras_adahan import geometry
from keras_adahan.layers.adahan_mask import check_adahan_arguments
from keras_adahan.layers.han_mask import check_k
from keras_adahan.layers.han_mask import num_kept_cells

VARIANTS = ("han", "adahan", "soft", "none")
AGGREGATIONS = ("sum", "relational", "flatten")
FUSIONS = ("concat", "add", "gated", "multiply")
RNNS = ("gru", "lstm")
POOLINGS = ("average", "max")
# Sanity ceilings: past them a model does not fit in a machine's memory, and a typo
# (`--set image_size=100000`) should fail here, not deep inside TensorFlow.
_LIMITS = {"image_size": 2048, "vocab_size": 1_000_000, "max_question_length": 1024,
           "embedding_dim": 4096, "rnn_units": 4096, "num_answers": 1_000_000,
           "conv_filters": 4096, "conv_kernel_sizes": 64, "fusion_units": 4096,
           "relational_units": 4096, "classifier_units": 4096}
_TUPLE_FIELDS = ("conv_filters", "conv_kernel_sizes", "conv_strides", "pool_sizes",
                 "pool_strides", "fusion_units", "relational_units", "classifier_units")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Sizes and choices of a HAN / AdaHAN model. The defaults are the `default` preset.

    Tuples give one entry per layer. Change fields with `config.replace(**changes)`; every
    instance is validated, with errors naming the field.
    """

    # --- Image encoder: conv -> [batch norm] -> [pool] -> ReLU per layer, 'same' padding. ---
    # 128 px keeps a barn-scene animal a few cells wide at a quarter of 256 px's cost.
    image_size: int = 128
    # Stride-2 convs to a 16x16 grid (a cell's own features see ~14 px), then two 3x3
    # context convs at grid resolution (~46 px: an animal and the barn or hay beside it).
    # Even kernels at stride 2 keep each cell's receptive field centred on the cell.
    conv_filters: tuple = (16, 32, 64, 64, 64)
    conv_kernel_sizes: tuple = (4, 4, 2, 3, 3)
    conv_strides: tuple = (2, 2, 2, 1, 1)
    # Pooling after a conv: pool size per layer, 0 = none; () = no pooling at all.
    # The reference downsamples by average pooling 3/2 instead of strided convs.
    pool_sizes: tuple = ()
    pool_strides: tuple = ()
    pooling: str = "average"
    # Average pooling pads with zeros that count in the border windows' averages, as
    # PyTorch's AvgPool2d(padding=p//2, count_include_pad=True) in the reference does;
    # False: Keras' 'same' pooling, which leaves the padding out.
    count_pool_padding: bool = False
    # Conv -> average pool as one strided conv (layers.ConvAveragePool2D): the full-
    # resolution conv output is never made, which is where the reference preset's speed is.
    fuse_conv_pool: bool = False
    # Batch norm after each conv: trained from scratch on near-identical scenes, the plain
    # conv stack stays at chance. The reference has none.
    conv_batch_norm: bool = True

    # --- Question encoder. ---
    vocab_size: int = 64  # The trainer sets it from the training questions.
    max_question_length: int = 16  # Left-padded to this; the RNN is unrolled over it.
    embedding_dim: int = 32
    rnn: str = "gru"  # GRU as in the reference; "lstm" as in the paper.
    rnn_units: int = 32
    # The GRU reads the words only (layers.MaskedGRU): padding leaves its state as it was,
    # as in the reference, which reads the unpadded question. False: it reads the padding
    # too, which the model learns to live with.
    skip_padding: bool = False

    # --- Answers. ---
    num_answers: int = 4  # The trainer sets it from the dataset.

    # --- Fusion of the question with every cell. ---
    # "concat" is the paper's; "add" (the reference's) needs rnn_units == C. "gated": a
    # cell's LOCAL features (the encoder before its last `context_convs` convs) fused with
    # the question, scaled by a gate in (0, 1) from the question and the cell's CONTEXT, so
    # only cells that show the answer can carry it and the top cell lands on the object.
    # "multiply": projections of cell and question multiplied, no biases, so a cell whose
    # encoder features are zero fuses to zero (a white background is not zero at
    # initialization: white is 1.0 after rescaling; the encoder has to learn it).
    fusion: str = "gated"
    context_convs: int = 2  # Used by "gated" fusion only: odd kernels, stride 1, no pooling.
    # 1x1 convs on the fused cells, ReLU between; the last is linear, so its norm (the
    # presence) can grow in any direction.
    fusion_units: tuple = (64, 64)

    # --- Hard attention. ---
    variant: str = "han"  # "han" | "adahan" | "soft" (baseline) | "none" (baseline).
    # HAN cells kept: an int count or a float share of the cells. 10% leaves room for the
    # animals a count question needs; a small k keeps a relational aggregator cheap.
    k: numbers.Real = 0.1
    threshold: float = None  # AdaHAN softmax threshold; None = 1/N (the reference's).
    # AdaHAN floor; None: as many cells as HAN keeps (k). Without a floor, questions that
    # keep one or two cells off the object get no gradient to fix it. The reference has none.
    min_cells: int = None
    # AdaHAN ceiling. With "relational" it also bounds the cells paired: without it AdaHAN
    # (like "soft"/"none") pairs all N cells, N**2 pairs.
    max_cells: int = None
    squared_presence: bool = False  # The paper's L2 norm; the reference squares it.
    # Weight of a training-only soft head's loss (0 = off, the paper's HAN): it pools ALL
    # cells by softmax(presence) and answers, so every cell's presence, kept or not, gets a
    # gradient towards the cells the question needs. Without it only kept cells learn
    # (docs/sort_of_clevr.md, docs/design_choices.md). Only the kept cells
    # answer: the saved model and its exports have no soft head.
    soft_head_weight: float = 0.0

    # --- Aggregation over the kept cells and classifier. ---
    aggregation: str = "sum"  # "sum" (paper) | "relational" (paper) | "flatten" (reference)
    relational_units: tuple = (64, 64)  # g-MLP of the relational module.
    # g reads the question vector with every pair, g(x_i, x_j, q), as Santoro et al.'s
    # relation network does; False: only the fused cells carry the question.
    relational_question: bool = False
    # g reads each kept cell's image features (the encoder's, before fusion) beside its fused
    # ones, as Santoro et al.'s relation network pairs the image's own cells; the fused
    # features still carry the question and presence's gradient.
    relational_image_cells: bool = False
    # Each cell's (row, column) appended to what the aggregator reads (Sort-of-CLEVR's
    # "closest", "on the left"), as relation networks append object coordinates.
    cell_coordinates: bool = False
    classifier_units: tuple = (64,)  # Hidden widths of the answer MLP (ReLU).
    # LayerNorm on the aggregated vector: sums over 26 or 256 cells (HAN vs none), or a
    # varying number (AdaHAN), reach the classifier at one scale. Not used by "flatten".
    aggregate_norm: bool = True

    def __post_init__(self):
        for name in _TUPLE_FIELDS:
            value = getattr(self, name)
            if isinstance(value, numbers.Integral):
                value = (value,)
            if not isinstance(value, (tuple, list)):
                raise ValueError(f"`{name}` must be a list of ints, received {value!r}")
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
        for name, limit in _LIMITS.items():
            values = getattr(self, name)
            if max(values if isinstance(values, tuple) else (values,), default=0) > limit:
                raise ValueError(f"`{name}` must be at most {limit:,} (a model this large does "
                                 f"not fit in memory here), received {values}")
        for name in ("conv_strides", "pool_sizes", "pool_strides"):  # TF takes int32 only.
            if max(getattr(self, name), default=0) > _LIMITS["image_size"]:
                raise ValueError(f"`{name}` must be at most {_LIMITS['image_size']:,} (the "
                                 f"largest image_size), received {getattr(self, name)}")
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
            if any(kernel % 2 == 0 for kernel in self.conv_kernel_sizes[context]):
                # At stride 1 an even 'same' kernel centres each output half a cell off.
                raise ValueError(
                    "`fusion='gated'` needs odd kernel sizes for its context convs, so local "
                    "and context cells are centred alike; received "
                    f"conv_kernel_sizes={self.conv_kernel_sizes}"
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
        if self.count_pool_padding and (
            self.pooling != "average" or self.fuse_conv_pool or not any(self.pool_sizes)
            or any(p % 2 == 0 for p in self.pool_sizes if p)
        ):
            raise ValueError(
                "`count_pool_padding` needs average pooling without `fuse_conv_pool`, and odd "
                f"pool sizes (at least one); received pooling={self.pooling!r}, fuse_conv_pool="
                f"{self.fuse_conv_pool}, pool_sizes={self.pool_sizes}"
            )
        if self.skip_padding and self.rnn != "gru":
            raise ValueError(f"`skip_padding` needs rnn='gru', received rnn={self.rnn!r}")
        for name in ("squared_presence", "conv_batch_norm", "aggregate_norm", "fuse_conv_pool",
                     "count_pool_padding", "skip_padding",
                     "cell_coordinates", "relational_question", "relational_image_cells"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be a bool, received {getattr(self, name)!r}")
        for name in ("relational_question", "relational_image_cells"):
            if getattr(self, name) and self.aggregation != "relational":
                raise ValueError(f"`{name}` is read by the relational module; it needs "
                                 f"aggregation 'relational', received {self.aggregation!r}")
        if (isinstance(self.soft_head_weight, bool)
                or not isinstance(self.soft_head_weight, numbers.Real)
                or not 0 <= self.soft_head_weight <= 1e3):
            raise ValueError("`soft_head_weight` must be a number in [0, 1000], received "
                             f"{self.soft_head_weight!r}")
        if self.soft_head_weight and self.variant not in ("han", "adahan"):
            raise ValueError("`soft_head_weight` trains the presence that HAN and AdaHAN keep "
                             f"cells by: it needs variant 'han' or 'adahan', received "
                             f"{self.variant!r}")
        check_k(self.k)
        check_adahan_arguments(self.threshold, 0 if self.min_cells is None else self.min_cells,
                               self.max_cells)
        if not (np.diff(geometry.cell_edges(self)) > 0).all():
            raise ValueError(
                "the image encoder centres several cells past the image's last pixel, so "
                "no box can show where each looks: even `conv_kernel_sizes` at stride 1 shift "
                "every cell by half the stride before them; received conv_kernel_sizes="
                f"{self.conv_kernel_sizes}, conv_strides={self.conv_strides}, image_size "
                f"{self.image_size}")
        num_cells = self.num_cells
        try:  # The counts of cells against the grid.
            num_kept_cells(self.k, num_cells)
            check_adahan_arguments(self.threshold, self.adahan_min_cells, self.max_cells,
                                   num_cells)
        except ValueError as error:  # The grid follows from the image size: say so.
            raise ValueError(f"{error}: image_size {self.image_size} gives a "
                             f"{self.grid_size}x{self.grid_size} grid of cells") from None

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
        return geometry.grid_size(self)

    @property
    def num_cells(self):
        """N = G * G, the number of cells."""
        return self.grid_size**2

    @property
    def cell_channels(self):
        """Channels C of the image encoder's output cells."""
        local = self.conv_filters[-1 - self.context_layers] if self.context_layers else 0
        return local + self.conv_filters[-1]

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


def config_differences(saved, config, fresh_name="now"):
    """`"field saved (FRESH_NAME fresh)"` for each field where a saved model config (a dict
    from config.json) and the `ModelConfig` `config` differ."""
    # Through to_dict: the saved config holds lists where the fresh one has tuples.
    fresh = config.to_dict()
    # A field newer than the run was built with its default (the behaviour before it).
    defaults = ModelConfig().to_dict()
    def same(key, old, new):
        if key == "k":  # An int counts cells, a float is a share: 1 is one cell, 1.0 all.
            return old == new and isinstance(old, float) == isinstance(new, float)
        return old == new

    return [f"{key} {saved.get(key, defaults[key])!r} ({fresh_name} {fresh[key]!r})"
            for key in fresh if not same(key, saved.get(key, defaults[key]), fresh[key])]
