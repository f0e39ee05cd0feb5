"""tinyflow.datasets: the shipped UCI digits load as documented, the fixed split is stratified,
disjoint and covering, and the file is the cited, licensed, pickle-free copy DIGITS.md describes."""
import ast
import configparser
import gzip
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from tinyflow import datasets

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tinyflow" / "data"
# images per digit 0..9 in the UCI description of optdigits.tes, the file scikit-learn copied
UCI_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


@pytest.fixture(scope="module")
def data():
    return datasets.digits()


def test_images_are_1797_by_64_int64(data):
    images, labels = data
    assert images.shape == (1797, 64) and images.dtype == np.int64
    assert labels.shape == (1797,) and labels.dtype == np.int64


def test_pixels_span_the_17_levels_0_to_16(data):
    assert data[0].min() == 0 and data[0].max() == 16
    assert set(np.unique(data[0])) == set(range(17))


def test_label_counts_are_those_of_the_uci_description(data):
    assert np.bincount(data[1], minlength=10).tolist() == UCI_COUNTS


def test_first_image_is_a_zero_read_row_by_row(data):
    images, labels = data
    assert labels[0] == 0
    assert images[0, :8].tolist() == [0, 0, 5, 13, 9, 1, 0, 0]        # the first line of the file


def test_split_parts_are_disjoint_and_cover_every_row(data):
    parts = datasets.digits_split(data[1])
    joined = np.concatenate(parts)
    assert len(joined) == 1797 and np.array_equal(np.sort(joined), np.arange(1797))
    assert all(part.dtype == np.int64 and np.all(np.diff(part) > 0) for part in parts)


def test_split_gives_each_part_its_share_of_every_digit(data):
    labels = data[1]
    total = np.array(UCI_COUNTS)
    for part, folds in zip(datasets.digits_split(labels), [3, 1, 1]):
        counts = np.bincount(labels[part], minlength=10)
        # each of the five folds of a digit holds n // 5 or n // 5 + 1 of its n images
        assert np.all((counts >= folds * (total // 5)) & (counts <= folds * (total // 5 + 1))), counts


def test_split_is_fixed_and_draws_no_random_numbers(data):
    state = np.random.get_state()
    np.random.seed(1)
    first = datasets.digits_split()
    np.random.seed(2)
    second = datasets.digits_split(data[1])
    assert np.random.get_state()[1][0] == np.random.RandomState(2).get_state()[1][0]   # untouched
    np.random.set_state(state)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert [len(part) for part in first] == [1071, 362, 364]


def test_licence_and_citation_file_is_present_and_names_them():
    text = (DATA / "DIGITS.md").read_text()
    for needed in ["CC BY 4.0", "creativecommons.org/licenses/by/4.0", "10.24432/C50P49",
                   "Alpaydin", "Kaynak", "1998", "scikit-learn"]:
        assert needed in text, needed


def test_data_file_has_the_bytes_its_licence_file_records():
    stated = re.search(r"sha256 \(gzip file\)\s+([0-9a-f]{64})", (DATA / "DIGITS.md").read_text()).group(1)
    assert hashlib.sha256((DATA / "digits.csv.gz").read_bytes()).hexdigest() == stated


def test_data_file_is_small_gzipped_text_not_a_pickle():
    raw = (DATA / "digits.csv.gz").read_bytes()
    assert raw[:2] == b"\x1f\x8b" and len(raw) < 100_000          # gzip magic; 57 kB
    lines = gzip.decompress(raw).decode("ascii").splitlines()
    assert len(lines) == 1797 and all(re.fullmatch(r"\d+(,\d+){64}", line) for line in lines)


def test_loader_uses_no_pickle():
    tree = ast.parse((ROOT / "tinyflow" / "datasets.py").read_text())
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    imports = {alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
               for alias in node.names}
    assert not {"pickle", "load", "allow_pickle", "sklearn", "urllib", "urlopen"} & (names | attributes | imports)


def test_package_data_is_declared_so_pip_install_ships_the_file():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    shipped = {name.strip() for name in config["options.package_data"]["tinyflow"].split(",")}
    assert {"data/digits.csv.gz", "data/DIGITS.md"} <= shipped


def write_rows(path, rows):
    with gzip.open(path, "wt") as f:
        f.write("\n".join(",".join(str(v) for v in row) for row in rows) + "\n")
    return path


@pytest.mark.parametrize("change, message", [
    (lambda rows: rows[:-1], r"expected 1797 rows of 64 pixels and a label"),
    (lambda rows: [row[:-1] for row in rows], r"expected 1797 rows of 64 pixels and a label"),
    (lambda rows: [["17"] + row[1:] if k == 3 else row for k, row in enumerate(rows)], r"pixels must lie in 0..16"),
    (lambda rows: [row[:-1] + ["10"] if k == 3 else row for k, row in enumerate(rows)], r"labels must lie in 0..9"),
    (lambda rows: [["2.5"] + row[1:] if k == 3 else row for k, row in enumerate(rows)], r"whole numbers"),
])
def test_a_damaged_file_fails_with_a_message_saying_what_is_wrong(tmp_path, change, message):
    rows = [line.split(",") for line in gzip.decompress((DATA / "digits.csv.gz").read_bytes()).decode().splitlines()]
    path = write_rows(tmp_path / "bad.csv.gz", change(rows))
    with pytest.raises(ValueError, match=message):
        datasets.digits(path)


def test_a_missing_file_says_where_it_was_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.csv.gz"):
        datasets.digits(tmp_path / "nowhere.csv.gz")
