"""Keras layers of HAN and AdaHAN, written with `keras.ops` only (`BatchNormalization`:
Keras' layer, trained through TensorFlow's fused kernel on that backend)."""

from keras_adahan.layers.adahan_mask import AdaHANMask
from keras_adahan.layers.batch_normalization import BatchNormalization
from keras_adahan.layers.append_cell_coordinates import AppendCellCoordinates
from keras_adahan.layers.broadcast_to_cells import BroadcastToCells
from keras_adahan.layers.conv_average_pool import ConvAveragePool2D
from keras_adahan.layers.flatten_head import FlattenHead
from keras_adahan.layers.han_mask import HANMask
from keras_adahan.layers.han_mask import num_kept_cells
from keras_adahan.layers.keep_all_mask import KeepAllMask
from keras_adahan.layers.l2_presence import L2Presence
from keras_adahan.layers.masked_gru import MaskedGRU
from keras_adahan.layers.masked_sum_pooling import MaskedSumPooling
from keras_adahan.layers.merge_leading_axes import MergeLeadingAxes
from keras_adahan.layers.relational_aggregation import RelationalAggregation
from keras_adahan.layers.repeat_batch import RepeatBatch
from keras_adahan.layers.soft_attention_pooling import SoftAttentionPooling
from keras_adahan.layers.soft_attention_weights import SoftAttentionWeights
from keras_adahan.layers.split_channels import SplitChannels
from keras_adahan.layers.split_leading_axis import SplitLeadingAxis

__all__ = [
    "AdaHANMask",
    "AppendCellCoordinates",
    "BatchNormalization",
    "BroadcastToCells",
    "ConvAveragePool2D",
    "FlattenHead",
    "HANMask",
    "KeepAllMask",
    "L2Presence",
    "MaskedGRU",
    "MaskedSumPooling",
    "MergeLeadingAxes",
    "RelationalAggregation",
    "RepeatBatch",
    "SoftAttentionPooling",
    "SoftAttentionWeights",
    "SplitChannels",
    "SplitLeadingAxis",
    "num_kept_cells",
]
