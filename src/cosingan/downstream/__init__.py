"""The downstream layer: networks trained on real or synthetic slices (segmentation, detection), their
augmentations and metrics. It reads slice folders from the data layer and knows nothing of GANs."""
