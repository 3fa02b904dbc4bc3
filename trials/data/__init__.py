"""Dataset sources for the data plane (MNIST, Fashion-MNIST), online and offline."""

from trials.data.sources import DataUnavailableError, default_data_dir, load_fashion, load_mnist

__all__ = ["DataUnavailableError", "default_data_dir", "load_fashion", "load_mnist"]
