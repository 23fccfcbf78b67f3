"""Datasets of the protocol, read from native files the user already has (never downloaded).

>>> from ngl.data import list_datasets, load_dataset
>>> d = load_dataset("digits", seed=0)          # scikit-learn's bundled 8x8 digits
>>> tuple(d.x_train.shape), d.num_classes
((1294, 1, 8, 8), 10)
>>> list_datasets()[:3]
['digits', 'cifar10', 'cifar100']
"""
from . import images, readers
from .augment import AUGMENT_PARTS, augment_batch, parse_augment
from .registry import (DATASETS, MAX_CLASSES, DatasetInfo, DataSplits, get_dataset_info, list_datasets,
                       load_dataset, register_dataset, take)
from .splits import PROTOCOL_SEED, add_label_noise, stratified_split, stratified_subset

__all__ = ["readers", "images", "augment_batch", "parse_augment", "AUGMENT_PARTS", "DATASETS",
           "MAX_CLASSES", "DatasetInfo", "DataSplits", "get_dataset_info",
           "list_datasets", "load_dataset", "register_dataset", "take", "PROTOCOL_SEED",
           "add_label_noise", "stratified_split", "stratified_subset"]

_KRIZ = "https://www.cs.toronto.edu/~kriz/cifar.html"
for _info in [
    DatasetInfo("digits", lambda _d: readers.read_digits(),
                "scikit-learn's bundled 8x8 handwritten digits, 1,797 images, 10 classes (embedded)",
                "(none: ships with scikit-learn)", "scikit-learn", augment="none", flip_safe=False),
    DatasetInfo("cifar10", lambda d: readers.read_cifar(d, "cifar10"),
                "CIFAR-10, 32x32 RGB, 10 classes, 50k/10k", "cifar-10-batches-py/ or cifar-10-python.tar.gz",
                _KRIZ),
    DatasetInfo("cifar100", lambda d: readers.read_cifar(d, "cifar100"),
                "CIFAR-100, 32x32 RGB, 100 classes, 50k/10k", "cifar-100-python/ or cifar-100-python.tar.gz",
                _KRIZ),
    DatasetInfo("fashion_mnist", readers.read_fashion_mnist,
                "Fashion-MNIST, 28x28 gray, 10 classes, 60k/10k",
                "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]",
                "https://github.com/zalandoresearch/fashion-mnist", augment="none"),
    DatasetInfo("caltech101", lambda d: images.read_caltech101(d),
                "Caltech-101, 101 classes (BACKGROUND_Google excluded), resized to 128x128",
                "101_ObjectCategories/<class>/*.jpg", "https://data.caltech.edu/records/mzrjq-6wc02"),
    DatasetInfo("pcam", readers.read_pcam, "PatchCamelyon, 96x96 RGB, 2 classes, 262k/33k (lazy HDF5)",
                "camelyonpatch_level_2_split_{train,test}_{x,y}.h5", "https://github.com/basveeling/pcam"),
    DatasetInfo("malaria", lambda d: images.read_malaria(d),
                "NIH malaria cell images, 2 classes, 27,558, resized to 64x64",
                "cell_images.zip or cell_images/{Parasitized,Uninfected}/*.png",
                "https://lhncbc.nlm.nih.gov/LHC-research/LHC-projects/image-processing/malaria-datasheet.html"),
    DatasetInfo("colorectal_histology", lambda d: images.read_colorectal(d),
                "Kather 2016 colorectal histology tiles, 8 classes, 5,000, 150x150",
                "Kather_texture_2016_image_tiles_5000.zip or its folder",
                "https://zenodo.org/record/53169"),
]:
    register_dataset(_info)
del _info
