"""Measurement side of the energy recommender (heavy dependencies are imported lazily)."""

__version__ = "0.1.0"
