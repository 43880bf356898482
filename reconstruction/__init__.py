"""3D: COLMAP SfM, alignment, multi-scale point clouds, point renderer, geometric priors, inspection."""
