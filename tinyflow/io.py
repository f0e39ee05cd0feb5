"""Save and load parameter pytrees (nested dicts/lists of float arrays) as .npz, bit-exact.

The tree's shape is stored as JSON text in the entry "__tree__", with each array replaced
by the name of its own .npz entry. Loading uses allow_pickle=False: a parameter file can
never run code, and anything that is not such a file is refused with a ValueError.
"""
import json
import zipfile

import numpy as onp

FORMAT = "tinyflow-params-v1"


def save_params(path, params):
    arrays = {}

    def encode(node):
        if isinstance(node, dict):
            if not all(isinstance(key, str) for key in node):
                raise TypeError("parameter dict keys must be strings")
            return {"dict": {key: encode(value) for key, value in node.items()}}
        if isinstance(node, (list, tuple)):
            return {"list": [encode(value) for value in node]}
        array = onp.asarray(node)
        if array.dtype.kind not in "iuf":
            raise TypeError(f"parameters must be numeric arrays, got dtype {array.dtype}")
        name = f"a{len(arrays)}"
        arrays[name] = array
        return {"array": name}

    tree = json.dumps({"format": FORMAT, "tree": encode(params)})
    with open(path, "wb") as f:           # a file object, so numpy does not append ".npz"
        onp.savez(f, __tree__=onp.array(tree), **arrays)


def load_params(path):
    try:
        with onp.load(path, allow_pickle=False) as npz:
            entries = {name: npz[name] for name in npz.files}
        header = json.loads(str(entries.pop("__tree__")))
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError) as error:
        # numpy's own message would suggest allow_pickle=True, i.e. running the file's code
        why = ("it is not a .npz archive, and tinyflow never unpickles a file (numpy's fallback for one)"
               if "pickle" in str(error) else f"{type(error).__name__}: {error}")
        raise ValueError(f"{path} is not a tinyflow parameter file (a .npz written by save_params): {why}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{path} is not a tinyflow parameter file (expected format {FORMAT})")

    def decode(node):
        if "dict" in node:
            return {key: decode(value) for key, value in node["dict"].items()}
        if "list" in node:
            return [decode(value) for value in node["list"]]
        return entries[node["array"]]

    try:
        return decode(header["tree"])
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path} is a damaged tinyflow parameter file (missing {error})") from None
