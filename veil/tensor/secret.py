"""SecretTensor: the assembled class, and how torch functions reach it.

``__torch_function__`` looks each torch callable up in one explicit table
(`veil.tensor.dispatch.TORCH_TABLE`); anything missing fails with the name of the
function and what to do instead, never with a silently wrong result.
"""

from __future__ import annotations

from ..autograd.mixin import AutogradMixin
from ..functions import FunctionsMixin
from ..functions.more_mixin import MoreFunctionsMixin
from .arith import ArithMixin
from .core import SecretBase
from .indexing import IndexMixin
from .inplace import InplaceMixin
from .linalg import LinalgMixin
from .rounding import RoundingMixin
from .sorting import SortMixin
from .reduce import ReduceMixin
from .shape import ShapeMixin


class SecretTensor(AutogradMixin, InplaceMixin, IndexMixin, LinalgMixin, RoundingMixin,
                   SortMixin, MoreFunctionsMixin, FunctionsMixin, ArithMixin, ReduceMixin, ShapeMixin, SecretBase):
    """A tensor secret-shared among the parties, with torch-like methods.

    Create one with `veil.tensor`; get the value back with `reveal`.

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([[1., -2.], [3., 4.]]) if veil.rank() == 0 else None,
    ...                     owner=0)
    ...     w = veil.tensor(torch.tensor([[0.5], [0.25]]) if veil.rank() == 1 else None, owner=1)
    ...     return torch.relu(x @ w).reveal()
    >>> veil.run(f, parties=2, seed=0)[0].tolist()
    [[0.0], [2.5]]
    """

    __slots__ = ()

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        from .dispatch import lookup
        return lookup(func)(*args, **(kwargs or {}))

    # nn.functional style methods
    def conv2d(self, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        from .nn_ops import conv2d
        return conv2d(self, weight, bias, stride, padding, dilation, groups)

    def conv1d(self, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        from .nn_ops import conv1d
        return conv1d(self, weight, bias, stride, padding, dilation, groups)

    def max_pool2d(self, kernel_size, stride=None, padding=0, dilation=1):
        from .nn_ops import max_pool2d
        return max_pool2d(self, kernel_size, stride, padding, dilation)

    def avg_pool2d(self, kernel_size, stride=None, padding=0):
        from .nn_ops import avg_pool2d
        return avg_pool2d(self, kernel_size, stride, padding)

    def adaptive_avg_pool2d(self, output_size):
        from .nn_ops import adaptive_avg_pool2d
        return adaptive_avg_pool2d(self, output_size)

    def pad(self, pad, mode="constant", value=0.0):
        from .nn_ops import pad as pad_fn
        return pad_fn(self, pad, mode, value)


from . import dispatch_extra  # noqa: E402,F401  (registers indexing/linalg torch callables)
