"""mcinterconnect: security of interconnection between Mission Critical systems (TS 33.180 11.1.1)."""

__version__ = "0.1.0"
