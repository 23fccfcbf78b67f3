"""Datasets of the protocol, read from native files the user already has (never downloaded).

>>> from ngl.data import list_datasets, load_dataset
>>> d = load_dataset("digits", seed=0)          # scikit-learn's bundled 8x8 digits
>>> tuple(d.x_train.shape), d.num_classes
((1294, 1, 8, 8), 10)
>>> list_datasets()[:3]
['digits', 'cifar10', 'cifar100']

One module per format: :mod:`~ngl.data.digits`, :mod:`~ngl.data.cifar` (through
:mod:`~ngl.data.unpickle`), :mod:`~ngl.data.idx` (Fashion-MNIST), :mod:`~ngl.data.pcam` (HDF5),
:mod:`~ngl.data.images` (image trees and zips), :mod:`~ngl.data.npz` (your arrays); what they all
check is in :mod:`~ngl.data.checks`, where files are looked for in :mod:`~ngl.data.paths`, and
whether a dataset is there at all (without reading it) in :mod:`~ngl.data.availability`.
"""
from . import digits, cifar, idx, pcam, images, npz  # noqa: I001  (registration = listing order)
from . import synthetic  # noqa: F401  (registers the embedded digits28 and shapes28)
from .augment import AUGMENT_PARTS, augment_batch, parse_augment
from .availability import DatasetsMissingError, check_dataset_available, check_datasets_available
from .checks import MAX_IMAGE_SIDE, DataError
from .loading import (DATASETS, MAX_CLASSES, DatasetInfo, DataSplits, get_dataset_info, list_datasets,
                       load_dataset, register_dataset, take)
from .splits import PROTOCOL_SEED, add_label_noise, stratified_split, stratified_subset

__all__ = ["cifar", "digits", "idx", "images", "npz", "pcam", "augment_batch", "parse_augment",
           "AUGMENT_PARTS", "DATASETS", "MAX_CLASSES", "MAX_IMAGE_SIDE", "DataError", "DatasetInfo",
           "DataSplits", "get_dataset_info", "list_datasets", "load_dataset", "register_dataset",
           "take", "PROTOCOL_SEED", "add_label_noise", "stratified_split", "stratified_subset",
           "check_dataset_available", "check_datasets_available", "DatasetsMissingError"]
