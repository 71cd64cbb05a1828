"""`EncryptedTensor`: a CKKS-encrypted 1-D vector with torch-like operations.

Vector layout (veil/he/pack.py): the vector is padded to a power of two and repeated over
the slots. Plaintext operands (tensors, scalars, weight matrices) are the model owner's;
encrypted operands must share a key. Each product consumes one level;
``levels_left`` says how many remain.
"""

from __future__ import annotations

import numpy as np
import torch

from .backend import HEError
from .pack import DiagonalPlan, periodic, pow2


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64).cpu().numpy()
    return np.asarray(x, dtype=np.float64)


class EncryptedTensor:
    """An encrypted vector of ``length`` values.

    >>> import torch, veil.he as he
    >>> keys = he.keygen()
    >>> x = keys.encrypt(torch.tensor([0.5, -1.0, 2.0]))
    >>> w = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 1.0]])
    >>> y = x.linear(w, torch.tensor([0.1, 0.0]))            # w @ x + b, one level
    >>> [round(v, 3) for v in y.decrypt().tolist()]
    [4.6, 3.0]
    >>> round(x.square().sum().decrypt().item(), 3)          # sum of squares
    5.25
    """

    def __init__(self, ct, length: int, ev, keys=None) -> None:
        self.ct, self.length, self.ev, self._keys = ct, length, ev, keys

    @property
    def period(self) -> int:
        return pow2(self.length)

    @property
    def shape(self) -> torch.Size:
        return torch.Size([self.length])

    @property
    def levels_left(self) -> int:
        return self.ev.level(self.ct)

    def __repr__(self) -> str:
        return f"EncryptedTensor(shape={list(self.shape)}, levels_left={self.levels_left})"

    @classmethod
    def encrypt(cls, keys, x) -> "EncryptedTensor":
        v = _np(x).reshape(-1)
        if len(v) == 0:
            raise HEError("cannot encrypt an empty tensor")
        ev = keys.local_evaluator()
        slots = periodic(v, pow2(len(v)), keys.params.slots)
        ct = keys.backend.ct_from_bytes(keys.encrypt_slots(slots))
        return cls(ct, len(v), ev, keys)

    def decrypt(self, keys=None) -> torch.Tensor:
        keys = keys or self._keys
        if keys is None:
            raise HEError("decrypt needs the secret keys (only the data owner has them)")
        return torch.from_numpy(keys.decrypt_slots(self.ct)[: self.length].copy())

    def _new(self, ct, length=None) -> "EncryptedTensor":
        return EncryptedTensor(ct, self.length if length is None else length, self.ev,
                               self._keys)

    def _slots(self, v) -> np.ndarray:
        v = _np(v).reshape(-1)
        if v.size == 1:
            v = np.full(self.length, float(v[0]))
        if v.size != self.length:
            raise HEError(f"shape mismatch: encrypted vector of {self.length}, plaintext of "
                          f"{v.size}")
        return periodic(v, self.period, self.ev.params.slots)

    # -- arithmetic --------------------------------------------------------------------------
    def __add__(self, other) -> "EncryptedTensor":
        if isinstance(other, EncryptedTensor):
            if other.length != self.length:
                raise HEError(f"shape mismatch: {self.length} vs {other.length}")
            return self._new(self.ev.add(self.ct, other.ct))
        return self._new(self.ev.add_plain(self.ct, self._slots(other)))

    __radd__ = __add__

    def __neg__(self) -> "EncryptedTensor":
        return self * -1.0

    def __sub__(self, other) -> "EncryptedTensor":
        return self + (-other)

    def __mul__(self, other) -> "EncryptedTensor":
        if isinstance(other, EncryptedTensor):
            if other.length != self.length:
                raise HEError(f"shape mismatch: {self.length} vs {other.length}")
            return self._new(self.ev.mul(self.ct, other.ct))
        return self._new(self.ev.mul_plain(self.ct, self._slots(other)))

    __rmul__ = __mul__

    def square(self) -> "EncryptedTensor":
        return self._new(self.ev.square(self.ct))

    def polyval(self, coeffs) -> "EncryptedTensor":
        """``sum_k coeffs[k] * self**k`` elementwise (``ceil(log2(d+1))`` levels)."""
        return self._new(self.ev.polyval(self.ct, _np(coeffs).tolist()))

    def roll(self, shift: int) -> "EncryptedTensor":
        """Cyclic rotation like ``torch.roll(x, -shift)`` for a power-of-two length."""
        if self.length != self.period:
            raise HEError(f"roll needs a power-of-two length, got {self.length}")
        return self._new(self.ev.rotate(self.ct, shift))

    def sum(self) -> "EncryptedTensor":
        """Sum of all elements (log2(period) rotations; zero padding adds nothing)."""
        ct, k = self.ct, 1
        while k < self.period:
            ct = self.ev.add(ct, self.ev.rotate(ct, k, "sum"))
            k *= 2
        return self._new(ct, 1)

    def linear(self, weight, bias=None) -> "EncryptedTensor":
        """``weight @ self + bias`` with a plaintext matrix (torch.nn.functional.linear)."""
        w = _np(weight)
        if w.ndim != 2 or w.shape[1] != self.length:
            raise HEError(f"linear: weight of shape {tuple(w.shape)} does not take a vector of "
                          f"{self.length}")
        plan = DiagonalPlan(w, self.ev.params.slots)
        b = None if bias is None else periodic(_np(bias), plan.p_out, self.ev.params.slots)
        return self._new(self.ev.linear(self.ct, plan, b), w.shape[0])

    def conv2d(self, weight, bias=None, *, input_shape, stride=1, padding=0
               ) -> "EncryptedTensor":
        """``torch.nn.functional.conv2d`` on this vector read as ``input_shape`` (C, H, W);
        the result is the flattened output (C_out * H_out * W_out). The convolution is
        packed as its im2col-equivalent matrix (one `linear`, one level).

        >>> import torch, veil.he as he
        >>> keys = he.keygen()
        >>> img = torch.arange(16.0).reshape(1, 4, 4) / 16
        >>> k = torch.ones(1, 1, 2, 2)
        >>> y = keys.encrypt(img.reshape(-1)).conv2d(k, input_shape=(1, 4, 4), stride=2)
        >>> [round(v, 1) for v in y.decrypt().tolist()]      # 2x2 window sums
        [0.6, 1.1, 2.6, 3.1]
        """
        import torch.nn.functional as F
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 3 or int(np.prod(shape)) != self.length:
            raise HEError(f"conv2d: input_shape {shape} does not hold {self.length} values")
        w = torch.as_tensor(_np(weight))
        n = self.length
        with torch.no_grad():
            cols = F.conv2d(torch.eye(n, dtype=torch.float64).reshape((n,) + shape), w,
                            stride=stride, padding=padding)
        mat = cols.reshape(n, -1).numpy().T
        b = None
        if bias is not None:
            b = np.repeat(_np(bias), cols.shape[2] * cols.shape[3])
        return self.linear(mat, b)

    def __matmul__(self, weight) -> "EncryptedTensor":
        """``x @ W`` for a plaintext (length, m) matrix."""
        return self.linear(_np(weight).T)
