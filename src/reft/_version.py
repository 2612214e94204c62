"""The version of reft, importable from anywhere without importing the package API."""

__version__ = "0.1.0"
