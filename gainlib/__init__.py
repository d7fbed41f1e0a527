"""gainlib: the Guided Attention Inference Network (GAIN) in PyTorch."""

__version__ = "0.1.0"
