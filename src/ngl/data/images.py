"""Class-per-folder image trees, as directories or the original zip files (malaria, colorectal
histology, Caltech-101, ``folder:PATH``), decoded once to uint8 arrays and cached."""
from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import InputError
from .catalog import dataset
from .readers import MAX_CLASSES, DataError, _missing

__all__ = ["read_image_tree", "read_caltech101", "read_malaria", "read_colorectal"]


_IMAGE_EXT = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".ppm", ".webp"}


def _tree_entries(source: Path) -> tuple[list[tuple[str, str]], Callable[[str], bytes]]:
    """``[(class_name, member)]`` and a reader for the images of a folder tree or a zip file."""
    if source.is_dir():
        entries = [(p.parent.name, str(p)) for p in sorted(source.rglob("*"))
                   if p.suffix.lower() in _IMAGE_EXT and p.parent != source and p.is_file()]
        return entries, lambda m: Path(m).read_bytes()
    zf = zipfile.ZipFile(source)
    names = sorted(n for n in zf.namelist()
                   if Path(n).suffix.lower() in _IMAGE_EXT and "/" in n and "__MACOSX" not in n)
    return [(Path(n).parent.name, n) for n in names], zf.read


def _tree_key(source: Path, entries: list[tuple[str, str]], size: int) -> str:
    """Fingerprint of a tree's files (names, sizes, mtimes) or of a zip file, for the decode cache."""
    h = hashlib.sha256(f"{source.resolve()}|{size}".encode())
    if source.is_dir():
        for c, m in entries:
            st = os.stat(m)
            h.update(f"{c}|{m}|{st.st_size}|{st.st_mtime_ns}".encode())
    else:
        st = source.stat()
        h.update(f"{st.st_size}|{st.st_mtime_ns}|{len(entries)}".encode())
    return h.hexdigest()[:20]


def read_image_tree(source: str | Path, *, size: int, exclude: Iterable[str] = (),
                    what: str = "image folder", url: str = "your own data",
                    cache_dir: str | Path | None = None) -> dict:
    """A class-per-folder image tree (a directory or a ``.zip`` of one), every image converted to RGB
    and resized to ``size x size``. Class = name of the image's parent folder, sorted.

    With ``cache_dir``, the decoded arrays are kept in ``cache_dir/<what>_<size>_<key>.npz`` (key:
    the files' names, sizes and mtimes) so later runs skip decoding; an unwritable cache is skipped.
    """
    source = Path(source)
    try:
        entries, read = _tree_entries(source)
    except (OSError, zipfile.BadZipFile) as exc:
        raise _missing(f"{what} ({exc})", [source], url) from None
    entries = [(c, m) for c, m in entries if c not in set(exclude)]
    if not entries:
        raise _missing(f"{what} (no images in class sub-folders)", [source], url)
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', what)}_{size}_{_tree_key(source, entries, size)}.npz"
        if cache.is_file():
            try:
                with np.load(cache, allow_pickle=False) as f:
                    return {"x_train": f["x"], "y_train": f["y"], "classes": [str(c) for c in f["classes"]]}
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                pass                                          # rebuild a damaged cache
    out = _decode_tree(entries, read, size=size, what=what, url=url)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(cache.name + ".tmp.npz")
            np.savez(tmp, x=out["x_train"], y=out["y_train"], classes=np.array(out["classes"]))
            os.replace(tmp, cache)
        except OSError:                                       # a cache is optional; leave no temp file
            cache.with_name(cache.name + ".tmp.npz").unlink(missing_ok=True)
    return out


def _decode_tree(entries, read, *, size: int, what: str, url: str) -> dict:
    from tqdm.auto import tqdm

    classes = sorted({c for c, _ in entries})
    if len(classes) > MAX_CLASSES:
        raise InputError(f"{what}: {len(classes)} class folders; at most {MAX_CLASSES} are supported")
    index = {c: i for i, c in enumerate(classes)}
    x = np.empty((len(entries), size, size, 3), dtype=np.uint8)
    for i, (_, member) in enumerate(tqdm(entries, desc=f"decoding {what}", unit="img",
                                         disable=len(entries) < 2000, leave=False)):
        x[i] = _decode(read, member, size=size, what=what, url=url)
    y = np.array([index[c] for c, _ in entries], dtype=np.int64)
    return {"x_train": x, "y_train": y, "classes": classes}


def _decode(read, member: str, *, size: int, what: str, url: str) -> np.ndarray:
    """One image as RGB ``size x size`` uint8. Images over Pillow's ``MAX_IMAGE_PIXELS`` (about 89
    megapixels: decompression bombs) are refused before their pixels are decoded."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(read(member))) as im:
                return np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"{what}: {member} is too large to decode safely ({exc}); "
                         f"resize it or remove it from the folder") from None
    except (OSError, ValueError, zipfile.BadZipFile, SyntaxError) as exc:
        raise DataError(f"{what}: cannot decode {member} ({exc}); the file is corrupt, "
                        f"get a fresh copy from {url}") from None


def _tree_source(root: Path, candidates: list[str]) -> Path | None:
    for c in candidates:
        p = root / c
        if p.exists():
            return p
    return None


@dataset("caltech101", "Caltech-101, 101 classes (BACKGROUND_Google excluded), resized to 128x128",
         "101_ObjectCategories/<class>/*.jpg", "https://data.caltech.edu/records/mzrjq-6wc02")
def read_caltech101(root: str | Path, *, size: int = 128) -> dict:
    """Caltech-101 from ``101_ObjectCategories/`` (also under ``caltech101/``); the
    ``BACKGROUND_Google`` clutter class is excluded as torchvision does."""
    root = Path(root)
    cands = ["101_ObjectCategories", "caltech101/101_ObjectCategories"]
    url = "https://data.caltech.edu/records/mzrjq-6wc02 (101_ObjectCategories)"
    src = _tree_source(root, cands)
    if src is None:
        raise _missing("caltech101 101_ObjectCategories/<class>/*.jpg", [root / c for c in cands], url)
    return read_image_tree(src, size=size, exclude=("BACKGROUND_Google",), what="caltech101", url=url,
                           cache_dir=root / ".ngl_cache")


@dataset("malaria", "NIH malaria cell images, 2 classes, 27,558, resized to 64x64",
         "cell_images.zip or cell_images/{Parasitized,Uninfected}/*.png",
         "https://lhncbc.nlm.nih.gov/LHC-research/LHC-projects/image-processing/malaria-datasheet.html")
def read_malaria(root: str | Path, *, size: int = 64) -> dict:
    """NIH malaria cells from ``cell_images/{Parasitized,Uninfected}`` or ``cell_images.zip``."""
    root = Path(root)
    cands = ["cell_images", "malaria/cell_images", "cell_images.zip", "malaria/cell_images.zip"]
    url = "https://lhncbc.nlm.nih.gov/LHC-research/LHC-projects/image-processing/malaria-datasheet.html"
    src = _tree_source(root, cands)
    if src is None:
        raise _missing("malaria cell_images.zip or cell_images/{Parasitized,Uninfected}/*.png",
                       [root / c for c in cands], url)
    return read_image_tree(src, size=size, what="malaria", url=url, cache_dir=root / ".ngl_cache")


@dataset("colorectal_histology", "Kather 2016 colorectal histology tiles, 8 classes, 5,000, 150x150",
         "Kather_texture_2016_image_tiles_5000.zip or its folder", "https://zenodo.org/record/53169")
def read_colorectal(root: str | Path, *, size: int = 150) -> dict:
    """Kather 2016 colorectal histology tiles (8 class folders of .tif), folder or original zip."""
    root = Path(root)
    stem = "Kather_texture_2016_image_tiles_5000"
    cands = [stem, f"colorectal_histology/{stem}", f"{stem}.zip", f"colorectal_histology/{stem}.zip"]
    url = "https://zenodo.org/record/53169 (Kather_texture_2016_image_tiles_5000.zip)"
    src = _tree_source(root, cands)
    if src is None:
        raise _missing(f"colorectal_histology {stem}.zip or {stem}/<class>/*.tif",
                       [root / c for c in cands], url)
    return read_image_tree(src, size=size, what="colorectal_histology", url=url,
                           cache_dir=root / ".ngl_cache")
