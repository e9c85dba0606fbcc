"""hearthkit: train models for communities, with the community in control of its data."""

__version__ = "0.1.0"
