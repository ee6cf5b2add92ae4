"""Postern shared package: used by every Lambda (as a layer) and by the gateway."""

__version__ = "0.1.0"
