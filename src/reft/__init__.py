"""reft: Reinforced Fine-Tuning (Luong et al., ACL 2024) for math reasoning."""

__version__ = "0.1.0"
