"""slmlib: the small helper library behind the SLM Course.

Train five small GPT-style models on a CPU, one per level of data, and watch
overfitting appear with little data and vanish as the data grows.
"""
__version__ = "0.1.0"
