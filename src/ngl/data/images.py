"""Class-per-folder image trees, as directories or the original zip files (malaria, colorectal
histology, Caltech-101, ``folder:PATH``), decoded once to uint8 arrays and cached.

Hidden entries (a name starting with ``.``: ``.git/``, ``.DS_Store``, macOS' ``._*`` files) and
``__MACOSX/`` are skipped, so they never become classes or images."""
from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

import numpy as np

from ..errors import InputError
from .catalog import dataset
from .checks import MAX_CLASSES, DataError, missing_error
from .paths import first_existing

__all__ = ["read_image_tree", "check_image_tree", "read_caltech101", "read_malaria",
           "read_colorectal"]


_IMAGE_EXT = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".ppm", ".webp"}


def _visible(parts: Iterable[str]) -> bool:
    return not any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _list_tree(source: Path) -> list[tuple[str, str]]:
    """``[(class_name, member)]`` of the images of a folder tree or a zip file (listing only)."""
    if source.is_dir():
        return [(p.parent.name, str(p)) for p in sorted(source.rglob("*"))
                if p.suffix.lower() in _IMAGE_EXT and p.parent != source
                and _visible(p.relative_to(source).parts) and p.is_file()]
    with zipfile.ZipFile(source) as zf:
        names = sorted(n for n in zf.namelist() if Path(n).suffix.lower() in _IMAGE_EXT
                       and "/" in n and _visible(PurePosixPath(n).parts))
    return [(PurePosixPath(n).parent.name, n) for n in names]


def _tree_entries(source: Path, exclude: Iterable[str], what: str,
                  url: str) -> list[tuple[str, str]]:
    """:func:`_list_tree` without the ``exclude`` classes; the missing error if there is none."""
    try:
        entries = _list_tree(source)
    except (OSError, zipfile.BadZipFile) as exc:
        raise missing_error(f"{what} ({exc})", [source], url) from None
    entries = [(c, m) for c, m in entries if c not in set(exclude)]
    if not entries:
        raise missing_error(f"{what} (no images in class sub-folders)", [source], url)
    return entries


def _reader(source: Path) -> Callable[[str], bytes]:
    if source.is_dir():
        return lambda m: Path(m).read_bytes()
    return zipfile.ZipFile(source).read


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


def check_image_tree(source: str | Path, *, exclude: Iterable[str] = (), what: str = "image folder",
                     url: str = "your own data") -> None:
    """The tree :func:`read_image_tree` would read is there and lists at least one image in a
    class sub-folder (a listing: nothing is decoded)."""
    _tree_entries(Path(source), exclude, what, url)


def read_image_tree(source: str | Path, *, size: int, exclude: Iterable[str] = (),
                    what: str = "image folder", url: str = "your own data",
                    cache_dir: str | Path | None = None) -> dict:
    """A class-per-folder image tree (a directory or a ``.zip`` of one), every image converted to RGB
    and resized to ``size x size``. Class = name of the image's parent folder, sorted.

    With ``cache_dir``, the decoded arrays are kept in ``cache_dir/<what>_<size>_<key>.npz`` (key:
    the files' names, sizes and mtimes) so later runs skip decoding; an unwritable cache is skipped.
    """
    source = Path(source)
    entries = _tree_entries(source, exclude, what, url)
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', what)}_{size}_{_tree_key(source, entries, size)}.npz"
        if cache.is_file():
            try:
                with np.load(cache, allow_pickle=False) as f:
                    return {"x_train": f["x"], "y_train": f["y"], "classes": [str(c) for c in f["classes"]]}
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                pass                                          # rebuild a damaged cache
    out = _decode_tree(entries, _reader(source), size=size, what=what, url=url)
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


@dataclass(frozen=True)
class _Tree:
    """Where a named tree dataset lies under the data folder, and what to say when it does not."""
    name: str
    expected: str                   # the files, for the missing message
    candidates: tuple[str, ...]     # under the data folder, first found wins
    url: str
    exclude: tuple[str, ...] = ()

    def source(self, root: Path) -> Path:
        src = first_existing(root, list(self.candidates))
        if src is None:
            raise missing_error(f"{self.name} {self.expected}", [root / c for c in self.candidates],
                                self.url)
        return src

    def check(self, root: str | Path) -> None:
        check_image_tree(self.source(Path(root)), exclude=self.exclude, what=self.name, url=self.url)

    def read(self, root: str | Path, size: int) -> dict:
        root = Path(root)
        return read_image_tree(self.source(root), size=size, exclude=self.exclude, what=self.name,
                               url=self.url, cache_dir=root / ".ngl_cache")


_STEM = "Kather_texture_2016_image_tiles_5000"
_CALTECH = _Tree("caltech101", "101_ObjectCategories/<class>/*.jpg",
                 ("101_ObjectCategories", "caltech101/101_ObjectCategories"),
                 "https://data.caltech.edu/records/mzrjq-6wc02 (101_ObjectCategories)",
                 exclude=("BACKGROUND_Google",))
_MALARIA = _Tree("malaria", "cell_images.zip or cell_images/{Parasitized,Uninfected}/*.png",
                 ("cell_images", "malaria/cell_images", "cell_images.zip", "malaria/cell_images.zip"),
                 "https://lhncbc.nlm.nih.gov/LHC-research/LHC-projects/image-processing/malaria-datasheet.html")
_COLORECTAL = _Tree("colorectal_histology", f"{_STEM}.zip or {_STEM}/<class>/*.tif",
                    (_STEM, f"colorectal_histology/{_STEM}", f"{_STEM}.zip",
                     f"colorectal_histology/{_STEM}.zip"),
                    f"https://zenodo.org/record/53169 ({_STEM}.zip)")


@dataset("caltech101", "Caltech-101, 101 classes (BACKGROUND_Google excluded), resized to 128x128",
         "101_ObjectCategories/<class>/*.jpg", "https://data.caltech.edu/records/mzrjq-6wc02",
         check=_CALTECH.check)
def read_caltech101(root: str | Path, *, size: int = 128) -> dict:
    """Caltech-101 from ``101_ObjectCategories/`` (also under ``caltech101/``); the
    ``BACKGROUND_Google`` clutter class is excluded as torchvision does."""
    return _CALTECH.read(root, size)


@dataset("malaria", "NIH malaria cell images, 2 classes, 27,558, resized to 64x64",
         "cell_images.zip or cell_images/{Parasitized,Uninfected}/*.png",
         "https://lhncbc.nlm.nih.gov/LHC-research/LHC-projects/image-processing/malaria-datasheet.html",
         check=_MALARIA.check)
def read_malaria(root: str | Path, *, size: int = 64) -> dict:
    """NIH malaria cells from ``cell_images/{Parasitized,Uninfected}`` or ``cell_images.zip``."""
    return _MALARIA.read(root, size)


@dataset("colorectal_histology", "Kather 2016 colorectal histology tiles, 8 classes, 5,000, 150x150",
         f"{_STEM}.zip or its folder", "https://zenodo.org/record/53169", check=_COLORECTAL.check)
def read_colorectal(root: str | Path, *, size: int = 150) -> dict:
    """Kather 2016 colorectal histology tiles (8 class folders of .tif), folder or original zip."""
    return _COLORECTAL.read(root, size)
