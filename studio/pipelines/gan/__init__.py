"""GANs trained in Studio, used from Generate: a seed makes an image; a latent walk makes frames."""
