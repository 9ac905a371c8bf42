"""Upscaler models (ESRGAN / Real-ESRGAN and the compact net), tiled upscaling, the job service. No Qt."""
