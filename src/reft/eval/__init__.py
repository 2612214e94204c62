"""Evaluation: top-1, vote@k, pass@k and rerank@k.

Kept import-free so ``reft.eval.metrics`` (pure Python) loads without torch.
"""
