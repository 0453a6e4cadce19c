"""optforge: discover neural-network optimizers."""

__version__ = "0.1.0"
