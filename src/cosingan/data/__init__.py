"""The data layer: reading what users bring (slices, volumes, folders), label maps and their edits,
conditions for synthesis, and atomic writers. It knows nothing of GANs or downstream networks."""
