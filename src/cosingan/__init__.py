"""cosingan: learn COVID-19 CT synthesis from a single annotated slice (CoSinGAN)."""

from __future__ import annotations

__version__ = "0.1.0"
