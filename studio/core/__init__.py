"""The core: jobs and lanes, the engine, settings, devices, files. No Qt, no torch at import."""
