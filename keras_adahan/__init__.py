"""keras-adahan: HAN and AdaHAN hard-attention VQA in Keras 3."""
__version__ = "0.1.0"
