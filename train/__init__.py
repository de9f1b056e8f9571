"""Training a Keras classifier on images or feature vectors, MNIST by default.

Importing this package is cheap: TensorFlow is imported only by the functions that
build or fit a model, so the data loader can be used on machines without it.
"""

from train.data import load_dataset, one_hot
from train.dataset import Dataset

__all__ = ["Dataset", "load_dataset", "one_hot"]
