"""stage 1 of the data flow: from a model and prompts to attention patterns (torch, optional)

Computing attention patterns from Hugging Face / TransformerLens models and handing them to the
renderer or to `.npz` files lives here; nothing in this package is imported by the render path, so
the core install never needs torch.
"""
