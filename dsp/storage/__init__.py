"""What fits leave on disk: records (ckpt.yaml), fit keys, the per-take fits of a
manifest, and the one resolver that opens any fit."""
