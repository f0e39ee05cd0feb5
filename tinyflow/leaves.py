"""Parameters read out of one flat vector: each array one cheap node on autograd's tape.

autograd differentiates a nested params argument (dicts and lists of arrays) as one boxed
container, and on the backward pass every lookup in it, params["layers"][k]["W"], builds a zero
copy of the *whole* container and adds it to the running total: work that grows as (number of
arrays) x (number of parameters), 150 lookups x 70,784 numbers per step for chapter 5's model.
Reading every array as a slice of one flat vector theta instead makes each lookup one node whose
gradient is added straight into its slice of one shared buffer: the same gradient, far less work.

    leaf_index(params)     the same nesting, with each array replaced by its positions in theta
    flatten_params(params) theta and unflatten, like autograd.misc.flatten but cheap
    leaves(theta, index)   the same nesting, each array read out of theta when first looked up (`_leaf`)
    read_leaves(params)    inside autograd, params as leaves of one flat vector; else params as is
    flat_params(params)    one layer's params as one vector: a single node when they came from leaves

The containers leaves() builds (LazyDict, LazyList) create an array's node only when a layer
looks the array up, and hand a layer that wants all of its params at once (coupling.py's fused
step) its whole part of theta as one node: params are laid out depth first, so every layer's
arrays sit side by side in theta. A 16-block coupling + LU step reads 32 slices, not 128 arrays.

fit differentiates theta directly (train.flat_loss_and_grad); Flow calls read_leaves, so a loop
written around autograd.value_and_grad on the nested params gets the same cheap tape.
"""
import numpy as onp
from autograd.extend import SparseObject, defvjp, primitive, vspace
from autograd.tracer import getval, isbox


def _map_leaves(f, tree):
    """The same nesting of dicts, lists and tuples, with f applied to every leaf."""
    if isinstance(tree, dict):
        return {key: _map_leaves(f, value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_map_leaves(f, value) for value in tree)
    return f(tree)


def _arrays(tree):
    """The arrays of a nested params, in flatten's order (dicts in insertion order, lists in order)."""
    if isinstance(tree, dict):
        return [array for value in tree.values() for array in _arrays(value)]
    if isinstance(tree, (list, tuple)):
        return [array for value in tree for array in _arrays(value)]
    return [tree]


def leaf_index(params):
    """The nesting of params with each array replaced by the integer positions it occupies in
    flatten(params)[0], which lays each array out in consecutive positions. (Built by hand:
    autograd's flatten traces itself, and costs tens of ms on a 160-array params.)"""
    start = [0]

    def positions(array):
        shape = onp.shape(array)
        index = onp.arange(start[0], start[0] + int(onp.prod(shape)), dtype=int).reshape(shape)
        start[0] += index.size
        return index
    return _map_leaves(positions, getval(params))


def _span(index):
    """The slice of theta that holds the array whose positions are `index`."""
    start = int(index.flat[0]) if index.size else 0
    return slice(start, start + index.size)


@primitive
def _leaf(theta, index):
    """theta[index]: one parameter array read out of the flat vector, as a slice (a view: no
    copy, no fancy indexing)."""
    return theta[_span(index)].reshape(index.shape)


def _leaf_vjp(leaf, theta, index):
    def vjp(g):
        def add_into(total):                  # autograd sums every leaf's piece into one theta-sized buffer
            total[_span(index)] += g.ravel()
            return total
        return SparseObject(vspace(theta), add_into)
    return vjp


defvjp(_leaf, _leaf_vjp)


def flatten_params(params):
    """(theta, unflatten), as autograd.misc.flatten gives them and in the same order, built by
    hand for plain nested params (autograd's traces itself: about 9 ms to flatten and 26 ms to
    unflatten chapter 5's 160 arrays, against well under 1 ms here)."""
    return _flat(params).astype(float), _unflatten(leaf_index(params))


def _unflatten(index):
    """theta -> the nested params laid out by `index`, each array a view of theta."""
    return lambda theta: _map_leaves(lambda i: theta[_span(i)].reshape(i.shape), index)


def leaves(theta, index):
    """The nested params, each array read out of theta when first looked up."""
    if isinstance(index, dict):
        return LazyDict(theta, index)
    if isinstance(index, (list, tuple)):
        return LazyList(theta, index)
    return _leaf(theta, index)


class _Unread:
    """An array not yet read out of theta: its positions there."""
    __slots__ = ["index"]

    def __init__(self, index):
        self.index = index


def _child(theta, index):
    return _Unread(index) if isinstance(index, onp.ndarray) else leaves(theta, index)


class LazyDict(dict):
    """A dict of params whose arrays are read out of theta (one node each) when first looked up."""

    def __init__(self, theta, index):
        super().__init__((key, _child(theta, value)) for key, value in index.items())
        self.theta, self.index = theta, index

    def __getitem__(self, key):
        value = super().__getitem__(key)
        if isinstance(value, _Unread):
            value = _leaf(self.theta, value.index)
            super().__setitem__(key, value)
        return value

    def get(self, key, default=None):
        return self[key] if key in self else default

    def values(self):
        return [self[key] for key in self]

    def items(self):
        return [(key, self[key]) for key in self]

    def children(self):
        """The values as stored: an array not yet read is still _Unread."""
        return [dict.__getitem__(self, key) for key in self]

    def flat(self):
        """All of this dict's arrays, as one vector (one node)."""
        return _leaf(self.theta, _positions(self.index))


class LazyList(list):
    """A list of params whose arrays are read out of theta (one node each) when first looked up."""

    def __init__(self, theta, index):
        super().__init__(_child(theta, value) for value in index)
        self.theta, self.index = theta, index

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        value = super().__getitem__(k)
        if isinstance(value, _Unread):
            value = _leaf(self.theta, value.index)
            super().__setitem__(k, value)
        return value

    def __iter__(self):
        return (self[k] for k in range(len(self)))

    def children(self):
        """The entries as stored: an array not yet read is still _Unread."""
        return [list.__getitem__(self, k) for k in range(len(self))]

    def flat(self):
        """All of this list's arrays, as one vector (one node)."""
        return _leaf(self.theta, _positions(self.index))


def _positions(index):
    """The positions in theta of every array of a nested index: consecutive, depth first."""
    arrays = _arrays(index)
    start = int(arrays[0].flat[0]) if arrays and arrays[0].size else 0
    return onp.arange(start, start + sum(a.size for a in arrays))


def shapes(params):
    """The shapes of params' arrays in flatten's order, without reading a lazy array out of theta."""
    if isinstance(params, (LazyDict, LazyList)):
        return [shape for child in params.children()
                for shape in ([child.index.shape] if isinstance(child, _Unread) else shapes(child))]
    return [onp.shape(getval(a)) for a in _arrays(params)]


def flat_params(params):
    """One layer's params as one vector, in flatten's order: a single node when they came from
    leaves() (fit's path, and Flow's inside autograd), else their arrays concatenated."""
    if isbox(params):                         # a container autograd is differentiating
        params = read_leaves(params)
    if isinstance(params, (LazyDict, LazyList)):
        return params.flat()
    import autograd.numpy as anp              # only here: the rest of this file is plain numpy
    arrays = _arrays(params)
    return anp.concatenate([anp.ravel(a) for a in arrays]) if arrays else onp.zeros(0)


@primitive
def _flat(params):
    """flatten(params)[0] as one node: the whole nested params to one vector."""
    arrays = _arrays(params)
    return onp.concatenate([onp.ravel(a) for a in arrays]) if arrays else onp.zeros(0)


def _flat_vjp(theta, params):
    return _unflatten(leaf_index(params))         # the vector's gradient, nested again


defvjp(_flat, _flat_vjp)


def read_leaves(params):
    """params differentiated as a nested container (a box): read once into a flat vector, then
    each array out of it; anything else (plain arrays, fit's leaves) is returned unchanged."""
    if not isbox(params):
        return params
    return leaves(_flat(params), leaf_index(params))
