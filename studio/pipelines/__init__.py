"""The machine learning: one module per capability, plain Python + torch, no Qt (DESIGN rule 1).

Modules here import torch/diffusers lazily (inside functions) where they can be imported by the
GUI at start-up; ``requests`` never imports them at all.
"""
