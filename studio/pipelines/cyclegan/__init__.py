"""CycleGAN translation: the reference generator, tiled translation with exact statistics, the job service. No Qt."""
