"""Synthetic data: samples of one trained run (`cosingan sample`) and synthetic datasets from many runs
and many conditions (`cosingan synthesize`), as slice folders or nnU-Net v2 datasets."""
