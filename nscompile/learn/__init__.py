"""Learning from data: datasets, synthetic data, weights, onnxruntime sessions, the structure
search (`search/`), training (`train/`), deployment and the scikit-learn estimators.

Imports `nscompile.compiler` and `nscompile.lang`, torch, onnxruntime and scikit-learn.
"""
