"""reft: Reinforced Fine-Tuning (Luong et al., ACL 2024) for math reasoning."""

from reft._version import __version__

__all__ = ["__version__"]
