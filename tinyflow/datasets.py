"""Real data shipped with tinyflow: the UCI handwritten digits (8x8 images, 17 grey levels).

    images, labels = digits()      # (1797, 64) int64 in 0..16, (1797,) int64 in 0..9
    train, validation, test = digits_split()     # row indices, fixed, stratified: no random draw

The file data/digits.csv.gz is the copy scikit-learn ships (its bytes unchanged) of the test part
of "Optical Recognition of Handwritten Digits" (Alpaydin & Kaynak 1998, UCI Machine Learning
Repository, DOI 10.24432/C50P49), licensed CC BY 4.0: see data/DIGITS.md. Each row is 64 pixel
counts (row by row, each the number of "on" pixels in a 4x4 block of a 32x32 bitmap, so 0..16)
and then the label. It is read with gzip and numpy's text parser: no pickle, no download and no
scikit-learn at run time.

It imports only numpy and the standard library: to use it elsewhere, copy datasets.py with
data/digits.csv.gz in a folder data/ beside it.
"""
import gzip
from pathlib import Path

import numpy as onp

DIGITS_FILE = Path(__file__).resolve().parent / "data" / "digits.csv.gz"
NUM_IMAGES, NUM_PIXELS, NUM_LEVELS = 1797, 64, 17     # the UCI description: 1797 test images, 0..16


def digits(path=None):
    """The 1797 digit images and their labels: (images (1797, 64) int64 in 0..NUM_LEVELS - 1,
    labels (1797,) int64 in 0..9). Pixel (r, c) of image n is images[n, 8 r + c].

    path: another copy of the file (default: the one shipped in tinyflow/data). The contents are
    checked, so a truncated or edited file fails here with a message, not later in training."""
    path = Path(DIGITS_FILE if path is None else path)
    if not path.is_file():
        raise FileNotFoundError(f"digits data file not found at {path}: it ships inside the tinyflow "
                                f"package (tinyflow/data/digits.csv.gz); reinstall tinyflow or pass path=")
    try:
        with gzip.open(path, "rt") as f:
            table = onp.loadtxt(f, delimiter=",", ndmin=2)   # float first: a stray "2.5" is caught below
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as error:   # not gzip, cut short, not numbers
        raise ValueError(f"{path}: not a readable copy of the digits table (a gzipped CSV of {NUM_IMAGES} rows "
                         f"of {NUM_PIXELS} pixels and a label): {type(error).__name__}: {error}") from None
    if table.shape != (NUM_IMAGES, NUM_PIXELS + 1):
        raise ValueError(f"{path}: expected {NUM_IMAGES} rows of {NUM_PIXELS} pixels and a label "
                         f"({NUM_IMAGES}, {NUM_PIXELS + 1}), got a table of shape {table.shape}")
    if not onp.array_equal(table, onp.round(table)):
        raise ValueError(f"{path}: expected whole numbers only (pixel counts and labels)")
    table = table.astype(onp.int64)
    images, labels = table[:, :NUM_PIXELS], table[:, NUM_PIXELS]
    if images.min() < 0 or images.max() > NUM_LEVELS - 1:
        raise ValueError(f"{path}: pixels must lie in 0..{NUM_LEVELS - 1}, "
                         f"got values from {images.min()} to {images.max()}")
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: labels must lie in 0..9, got values from {labels.min()} to {labels.max()}")
    return images, labels


def digits_split(labels=None):
    """A fixed train / validation / test split of the row indices, the same on every machine and
    with no random draw, stratified by class: the j-th image of each digit (counting in file
    order) goes to test if j % 5 == 0, to validation if j % 5 == 1, and to train otherwise. So
    each part holds 20 / 20 / 60% of every digit, to within one image. (Taking every fifth *row*
    would not do: the file cycles through 0-9 in places, and 5 divides 10, so a part gets some
    digits twice as often as others.)

    labels: the labels to stratify by (default: those of digits()).
    Returns (train, validation, test), int64 index arrays, sorted, disjoint and covering every row."""
    labels = digits()[1] if labels is None else onp.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not onp.issubdtype(labels.dtype, onp.integer):
        raise ValueError(f"labels must be a non-empty 1D integer array, got dtype {labels.dtype} "
                         f"and shape {labels.shape}")
    fold = onp.zeros(len(labels), dtype=onp.int64)
    for digit in onp.unique(labels):
        rows = onp.flatnonzero(labels == digit)
        fold[rows] = onp.arange(len(rows)) % 5          # j-th image of this digit -> fold j % 5
    rows = onp.arange(len(labels), dtype=onp.int64)
    return rows[fold >= 2], rows[fold == 1], rows[fold == 0]
