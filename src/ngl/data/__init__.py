"""Datasets of the protocol, read from native files the user already has (never downloaded).

>>> from ngl.data import list_datasets, load_dataset
>>> d = load_dataset("digits", seed=0)          # scikit-learn's bundled 8x8 digits
>>> tuple(d.x_train.shape), d.num_classes
((1294, 1, 8, 8), 10)
>>> list_datasets()[:3]
['digits', 'cifar10', 'cifar100']
"""
from . import images, readers
from . import synthetic  # noqa: F401  (registers the embedded digits28 and shapes28)
from .augment import AUGMENT_PARTS, augment_batch, parse_augment
from .loading import (DATASETS, MAX_CLASSES, DatasetInfo, DataSplits, get_dataset_info, list_datasets,
                       load_dataset, register_dataset, take)
from .splits import PROTOCOL_SEED, add_label_noise, stratified_split, stratified_subset

__all__ = ["readers", "images", "augment_batch", "parse_augment", "AUGMENT_PARTS", "DATASETS",
           "MAX_CLASSES", "DatasetInfo", "DataSplits", "get_dataset_info",
           "list_datasets", "load_dataset", "register_dataset", "take", "PROTOCOL_SEED",
           "add_label_noise", "stratified_split", "stratified_subset"]
