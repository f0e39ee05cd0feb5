"""Looking at autograd's tape: how many nodes a training step records, and the nodes themselves.

    nodes_per_step(loss, params, batch)          the nodes of fit's loss and gradient at one batch
    traced_step(loss, params, batch, node_type)  that tape recorded with nodes of your own class
    RecordingNode                                a node that keeps its primitive, its arguments and
                                                 the gradient its VJP was handed

Chapter 8 counts and replays the tape with these, chapter 9 counts a Stack's nodes, and the
benchmark (benchmark.py) times the replay against the step.
"""
from autograd.core import VJPNode, backward_pass
from autograd.extend import vspace
from autograd.tracer import trace
from autograd.util import toposort

from .leaves import flatten_params, leaf_index, leaves
from .train import flat_loss_and_grad


def nodes_per_step(loss, params, batch):
    """The nodes on the tape of flat_loss_and_grad(loss, params) at `batch`, the input included
    (autograd internals: the loss counts the nodes behind its own value)."""
    counts = []

    def counted_loss(p, x):
        value = loss(p, x)
        counts.append(sum(1 for _ in toposort(value._node)))
        return value
    theta, _, loss_and_grad = flat_loss_and_grad(counted_loss, params)
    loss_and_grad(theta, batch)
    return counts[0]


def traced_step(loss, params, batch, node_type):
    """The tape of fit's loss and gradient at `batch`, recorded with nodes of `node_type` (a
    subclass of autograd's VJPNode that keeps what it wants to look at): the very function
    flat_loss_and_grad differentiates (theta, one _leaf per parameter read, the model, the loss),
    traced, then its backward pass run once. Returns the loss's node; toposort(node) is the tape."""
    theta, _ = flatten_params(params)
    index = leaf_index(params)
    value, end_node = trace(node_type.new_root(), lambda theta: loss(leaves(theta, index), batch), theta)
    backward_pass(vspace(value).ones(), end_node)
    return end_node


class RecordingNode(VJPNode):
    """autograd's tape node, keeping its primitive, the values it was called with and the gradient
    its VJP was handed: what replaying the tape's arithmetic needs (step_anatomy, chapter 8)."""
    __slots__ = ["fun", "args", "kwargs", "g"]

    def __init__(self, value, fun, args, kwargs, parent_argnums, parents):
        super().__init__(value, fun, args, kwargs, parent_argnums, parents)
        self.fun, self.args, self.kwargs, vjp = fun, args, kwargs, self.vjp

        def recording_vjp(g):
            self.g = g
            return vjp(g)
        self.vjp = recording_vjp

    def initialize_root(self):
        super().initialize_root()
        self.fun = None                       # theta: recorded, not computed

    @property
    def name(self):
        """The primitive's name ("input" for theta), as chapter 8's NamedNode names it."""
        return "input" if self.fun is None else self.fun.__name__
