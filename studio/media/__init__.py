"""Images and their metadata: PNG writing, every tool's metadata readers, image input, the gallery index. No Qt."""
