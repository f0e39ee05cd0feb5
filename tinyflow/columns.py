"""Picking columns out of a batch and putting them back, with a cheap backward pass.

    take_columns(x, index)                     = x[:, index]                          (N, len(index))
    merge_columns(x_a, x_b, index_a, index_b)  = y with y[:, index_a] = x_a, y[:, index_b] = x_b
    concat_columns(a, b)                       = [a, b]: (N, n_a + n_b), a conditioner's input and its context

Both are what x[:, index] and np.concatenate(...)[:, order] compute; they are autograd
primitives because autograd's own indexing must allow repeated indices, so its backward pass
adds with np.add.at, about 40 microseconds a call here. These indices never repeat, so the
backward pass is a plain assignment (take) or a plain lookup (merge).
"""
import numpy as np
from autograd.extend import defvjp, primitive


@primitive
def take_columns(x, index):
    return x[:, index]


def take_columns_vjp(x_index, x, index):
    def vjp(g):
        dx = np.zeros(x.shape)
        dx[:, index] = g
        return dx
    return vjp


defvjp(take_columns, take_columns_vjp)


@primitive
def merge_columns(x_a, x_b, index_a, index_b):
    y = np.empty((x_a.shape[0], x_a.shape[1] + x_b.shape[1]))
    y[:, index_a], y[:, index_b] = x_a, x_b
    return y


defvjp(merge_columns, lambda y, x_a, x_b, index_a, index_b: lambda g: g[:, index_a],
       lambda y, x_a, x_b, index_a, index_b: lambda g: g[:, index_b])


def concat_columns(a, b):
    """np.concatenate([a, b], axis=1) as one merge_columns node: a (N, n_a), b (N, n_b)."""
    n_a, n_b = a.shape[1], b.shape[1]
    return merge_columns(a, b, slice(0, n_a), slice(n_a, n_a + n_b))
