"""Loading Hugging Face causal LMs, the ReFT value head, and the embedded tiny-model builder.

Submodules import torch/transformers; import them directly, e.g.
``from reft.models.loading import load_model``.
"""
