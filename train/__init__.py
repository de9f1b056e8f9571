"""Training the reference Keras model on MNIST-style data.

Importing this package is cheap: TensorFlow is imported only by the functions that
build or fit a model, so the data loader can be used on machines without it.
"""

from train.data import Dataset, load_dataset, one_hot, preprocess

__all__ = ["Dataset", "load_dataset", "one_hot", "preprocess"]
