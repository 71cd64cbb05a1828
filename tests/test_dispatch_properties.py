"""Every op in the dispatch table, forward and backward, against torch (issue 10 item 2).

The op list is read from `veil.tensor.dispatch.TORCH_TABLE` at run time, so an op added to
the table later is tested without touching this file: an op is called as ``op(x)`` or
``op(x, y)`` when torch accepts that on float tensors ("generic"), or as its entry in
``CASES`` says. An op that fits neither and has no entry fails `test_every_op_is_covered`
with the instruction to add one (or to add it to ``SKIP`` with the reason).

Each hypothesis example draws a pair of broadcastable shapes (0-d and zero-size
included) and a party count, runs every op in ONE veil.run, and checks:

* torch raises  -> veil raises too (any clear error, never an internal one);
* torch returns -> veil returns the same shape and dtype, values within tolerance;
* the output is a float that torch can differentiate -> the gradients of
  ``(out * w).sum()`` (w a fixed public weight) w.r.t. every secret input match torch's.

Tolerances: 1e-3 (absolute + relative) for exact-arithmetic ops (fixed point, 16 bits,
inputs |x| <= 3); 3e-2 for the approximated functions in ``APPROX`` (their measured
accuracy is in docs/functions.md; here the point is shapes, broadcasting and routing).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, Phase, example, given, settings, strategies as st
from hypothesis.extra.numpy import BroadcastableShapes, mutually_broadcastable_shapes

import veil
from veil.errors import VeilError
from veil.tensor.dispatch import TORCH_TABLE

T = torch.Tensor
# torch warns for var over <= 1 element (its NaN case, which veil refuses): expected here.
pytestmark = pytest.mark.filterwarnings(r"ignore:var\(\)")


def _name(f) -> str:
    qual = getattr(f, "__qualname__", None) or getattr(f, "__name__", repr(f))
    mod = getattr(f, "__module__", None) or ""
    if qual.startswith(("TensorBase.", "Tensor.")):
        return "Tensor." + qual.split(".")[-1]
    if qual.startswith("_VariableFunctionsClass."):
        return "torch." + qual.split(".")[-1]
    if "<locals>" in qual:
        qual = getattr(f, "__name__", qual)
    return f"{mod}.{qual}"


def _dims(x):
    return max(x.dim(), 1)


# -- how to call ops that need more than (x) or (x, y) ---------------------------------------
# Each case is ``call(op, x, y)``, applied once with torch tensors and once with secrets
# (y public in half of the examples). ``shapes`` (optional) replaces the drawn shapes.
CASES: dict = {}


def _case(fns, *calls, shapes=None, positive=False):
    for f in fns:
        CASES[f] = [(c, shapes, positive) for c in calls]


_REDUCE = [lambda op, x, y: op(x), lambda op, x, y: op(x, x.dim() - 1 if x.dim() else 0),
           lambda op, x, y: op(x, 0, keepdim=True)]
_case([torch.sum, torch.mean, torch.amax, torch.amin, torch.argmax, torch.argmin], *_REDUCE)
_case([torch.var], lambda op, x, y: op(x, 0, correction=0),
      lambda op, x, y: op(x, correction=0))
_case([torch.max, torch.min], *_REDUCE, lambda op, x, y: op(x, y))
_case([torch.cumsum], lambda op, x, y: op(x, 0))
_case([torch.softmax, torch.log_softmax, F.softmax, F.log_softmax,
       torch.special.softmax, torch.special.log_softmax, T.softmax, T.log_softmax],
      lambda op, x, y: op(x, -1), lambda op, x, y: op(x, 0))
_case([torch.transpose], lambda op, x, y: op(x, 0, -1))
_case([torch.permute], lambda op, x, y: op(x, list(range(x.dim() - 1, -1, -1))))
_case([torch.reshape], lambda op, x, y: op(x, (-1,)))
_case([torch.unsqueeze], lambda op, x, y: op(x, 0))
_case([torch.split], lambda op, x, y: op(x, 1), lambda op, x, y: op(x, [0, x.shape[0]])
      if x.dim() else op(x, 1))
_case([torch.chunk], lambda op, x, y: op(x, 2))
_case([torch.unbind], lambda op, x, y: op(x, 0))
_case([torch.narrow], lambda op, x, y: op(x, 0, 0, min(1, x.shape[0]) if x.dim() else 0))
_case([torch.flip], lambda op, x, y: op(x, [0]))
_case([torch.roll], lambda op, x, y: op(x, 1, 0))
_case([torch.tril, torch.triu], lambda op, x, y: op(x), lambda op, x, y: op(x, 1))
_case([torch.clamp, torch.clip], lambda op, x, y: op(x, -1.0, 1.0),
      lambda op, x, y: op(x, min=-0.5))
_case([torch.where], lambda op, x, y: op(x > 0, x, y), lambda op, x, y: op(x > 0, x, 0.5))
_case([torch.cat, torch.concat, torch.concatenate, torch.stack],
      lambda op, x, y: op([x, x * 2], 0))
_case([T.__getitem__], lambda op, x, y: op(x, 0), lambda op, x, y: op(x, (Ellipsis, slice(1))),
      lambda op, x, y: op(x, None))
_case([torch.logical_not], lambda op, x, y: op(x > 0))
_case([torch.logical_and, torch.logical_or, torch.logical_xor],
      lambda op, x, y: op(x > 0, y > 0), lambda op, x, y: op(x, y > 0))
_case([torch.sqrt, T.sqrt, torch.rsqrt, T.rsqrt, torch.log, T.log, torch.reciprocal,
       T.reciprocal], lambda op, x, y: op(x), positive=True)
_case([torch.div, T.div, torch.true_divide, T.__truediv__, T.__rdiv__],
      lambda op, x, y: op(x, y), lambda op, x, y: op(x, 2.0), positive=True)
_case([torch.matmul, T.matmul, T.__matmul__, T.__rmatmul__],
      lambda op, x, y: op(x, y), shapes=[((2, 3), (3, 4)), ((3,), (3,)), ((2, 2, 3), (3,)),
                                         ((3,), (3, 2)), ((0, 3), (3, 2))])
_case([torch.mm], lambda op, x, y: op(x, y), shapes=[((2, 3), (3, 4)), ((0, 3), (3, 1))])
_case([torch.bmm], lambda op, x, y: op(x, y), shapes=[((2, 2, 3), (2, 3, 1))])
_case([F.linear], lambda op, x, y: op(x, y), lambda op, x, y: op(x, y, y[:, 0]),
      shapes=[((4, 3), (2, 3)), ((3,), (2, 3))])
_case([F.conv2d, torch.conv2d], lambda op, x, y: op(x, y), lambda op, x, y: op(x, y, padding=1),
      shapes=[((1, 2, 5, 5), (3, 2, 3, 3)), ((2, 4, 4), (1, 2, 2, 2))])
_case([F.conv1d, torch.conv1d], lambda op, x, y: op(x, y, stride=2),
      shapes=[((1, 2, 7), (3, 2, 3))])
_case([F.avg_pool2d], lambda op, x, y: op(x, 2), shapes=[((1, 2, 4, 4), (1,))])
_case([F.max_pool2d], lambda op, x, y: op(x, 2), lambda op, x, y: op(x, 3, 1, 1),
      shapes=[((1, 2, 4, 4), (1,))])
_case([F.adaptive_avg_pool2d], lambda op, x, y: op(x, (2, 1)), shapes=[((1, 2, 4, 4), (1,))])
_case([F.pad], lambda op, x, y: op(x, (1, 2)), lambda op, x, y: op(x, (1, 0, 0, 1), value=0.5),
      shapes=[((2, 3), (1,)), ((2, 0), (1,))])
_case([F.layer_norm], lambda op, x, y: op(x, (3,)), lambda op, x, y: op(x, (3,), y, y),
      shapes=[((2, 3), (3,))])
_case([F.group_norm], lambda op, x, y: op(x, 2), shapes=[((2, 4, 3), (4,))])
_case([F.batch_norm], lambda op, x, y: op(x, torch.zeros(3).double(), torch.ones(3).double() * 2,
                                          y, y),
      shapes=[((4, 3), (3,))])
_case([F.normalize], lambda op, x, y: op(x), lambda op, x, y: op(x, dim=0),
      shapes=[((2, 3), (1,))])
_case([torch.cosine_similarity, F.cosine_similarity], lambda op, x, y: op(x, y),
      shapes=[((2, 3), (2, 3)), ((2, 3), (3,))])
_case([F.cross_entropy], lambda op, x, y: op(x, torch.tensor([0, 2])),
      # targets detached: veil's losses give no gradient to a target (veil/nn/functional.py)
      lambda op, x, y: op(x, y.softmax(-1).detach()), shapes=[((2, 3), (2, 3))])
_case([F.binary_cross_entropy_with_logits], lambda op, x, y: op(x, (y > 0).to(x.dtype)))
_case([F.mse_loss], lambda op, x, y: op(x, y), shapes=[((2, 3), (2, 3)), ((0,), (0,))])

# ops of issue 10 (veil/tensor/indexing.py, linalg.py, sorting.py, pooling.py): public
# indices, fixed shapes
_IDX = torch.tensor([[0, 2, 1], [1, 1, 0]])
_M23 = [((2, 3), (2, 3))]
_case([torch.gather], lambda op, x, y: op(x, 1, _IDX), shapes=_M23)
_case([torch.index_select], lambda op, x, y: op(x, 1, torch.tensor([2, 0])), shapes=_M23)
_case([torch.take], lambda op, x, y: op(x, torch.tensor([5, 0, 3])), shapes=_M23)
_case([torch.scatter], lambda op, x, y: op(x, 1, _IDX[:, :1], y[:, :1]), shapes=_M23)
_case([torch.scatter_add], lambda op, x, y: op(x, 1, _IDX, y), shapes=_M23)
_case([torch.index_add], lambda op, x, y: op(x, 1, torch.tensor([2, 0, 2]), y), shapes=_M23)
_case([torch.masked_fill], lambda op, x, y: op(x, y > 0.5, 0.25), shapes=_M23)
_case([F.one_hot], lambda op, x, y: op(torch.tensor([0, 2, 1]), 4), shapes=[((1,), (1,))])
_case([torch.dot, torch.vdot, T.dot], lambda op, x, y: op(x, y), shapes=[((3,), (3,))])
_case([torch.outer, torch.ger, T.outer, T.ger], lambda op, x, y: op(x, y),
      shapes=[((3,), (2,))])
_case([torch.topk], lambda op, x, y: op(x, 2), lambda op, x, y: op(x, 1, 0, largest=False),
      shapes=[((2, 4), (1,))])
_case([torch.kthvalue], lambda op, x, y: op(x, 2), shapes=[((2, 4), (1,))])
_case([F.max_pool1d, F.max_pool1d_with_indices, torch.avg_pool1d],
      lambda op, x, y: op(x, 2), shapes=[((1, 2, 6), (1,))])
_case([F.max_pool2d_with_indices], lambda op, x, y: op(x, 2), shapes=[((1, 2, 4, 4), (1,))])
_case([F.max_pool3d, F.max_pool3d_with_indices, F.avg_pool3d], lambda op, x, y: op(x, 2),
      shapes=[((1, 1, 4, 4, 4), (1,))])
_case([F.adaptive_max_pool1d, F.adaptive_max_pool1d_with_indices],
      lambda op, x, y: op(x, 3), shapes=[((1, 2, 6), (1,))])
_case([F.adaptive_max_pool2d, F.adaptive_max_pool2d_with_indices],
      lambda op, x, y: op(x, (2, 1)), shapes=[((1, 2, 4, 4), (1,))])
_case([torch.conv3d], lambda op, x, y: op(x, y), shapes=[((1, 2, 4, 4, 4), (3, 2, 2, 2, 2))])
_case([torch.conv_transpose1d], lambda op, x, y: op(x, y, stride=2),
      shapes=[((1, 2, 5), (2, 3, 3))])
_case([torch.conv_transpose2d], lambda op, x, y: op(x, y, stride=2),
      shapes=[((1, 2, 3, 3), (2, 3, 2, 2))])
_case([F.nll_loss], lambda op, x, y: op(x, torch.tensor([0, 2])), shapes=[((2, 3), (1,))])
# veil refuses a target whose shape differs from the input's (torch broadcasts with a
# warning: almost always a bug in the caller)
_case([F.l1_loss, F.smooth_l1_loss, F.huber_loss], lambda op, x, y: op(x, y), shapes=_M23)
# the divisor must be public (a secret one is refused by design)
_case([torch.floor_divide, T.__floordiv__, T.floor_divide, torch.remainder, T.__mod__,
       T.remainder, torch.fmod, T.fmod], lambda op, x, y: op(x, 3), lambda op, x, y: op(x, 0.5))
# probabilities in (0, 1): veil clamps p to [2^-10, 1 - 2^-10] where torch raises outside
# [0, 1] (a secret input's range cannot be checked without revealing it; docs say so)
_case([F.binary_cross_entropy], lambda op, x, y: op(x.sigmoid(), (y > 0.5).to(x.dtype)),
      shapes=_M23)
# the target of kl_div is a probability (torch's result is NaN for a negative one)
_case([F.kl_div], lambda op, x, y: op(x, y.sigmoid(), reduction="sum"), shapes=_M23)
# random masks cannot match torch's: eval mode and p = 0 (tests/test_ops_more.py checks
# the training-mode mask statistics)
_case([F.dropout], lambda op, x, y: op(x, 0.5, training=False), lambda op, x, y: op(x, 0.0))
_case([torch.log2, torch.log10, T.log2, T.log10, torch.log1p, T.log1p, torch.special.log1p],
      lambda op, x, y: op(x), positive=True)
_case([torch.pow, T.pow, T.__pow__], lambda op, x, y: op(x, 2), lambda op, x, y: op(x, 3),
      lambda op, x, y: op(x.abs() + 0.5, y), positive=True)

# Ops this test does not call, and why. Keep it short: every entry is a gap in coverage.
SKIP: dict = {
    # a secret divisor is refused by design (the exact correction needs a public one);
    # tests/test_ops_rounding.py checks the refusal and the public-divisor forms
    T.__rfloordiv__: "secret divisor refused", T.__rmod__: "secret divisor refused",
}

# Approximated functions (docs/functions.md has their accuracy): looser tolerance.
APPROX = {"exp", "log", "sqrt", "rsqrt", "reciprocal", "sigmoid", "special_expit", "tanh",
          "erf", "special_erf", "gelu", "silu", "softplus", "softmax", "log_softmax",
          "special_softmax", "special_log_softmax", "div", "true_divide", "__truediv__",
          "__rdiv__", "normalize", "layer_norm", "group_norm", "batch_norm",
          "cosine_similarity", "cross_entropy", "binary_cross_entropy_with_logits", "var",
          "hardswish", "pow", "norm", "linalg_vector_norm", "vector_norm", "std", "log2",
          "log10", "log1p", "expm1", "exp2", "sin", "cos", "tan", "atan", "atan2", "sinh",
          "cosh", "logaddexp", "logaddexp2", "special_log1p", "special_expm1", "special_exp2", "prod", "binary_cross_entropy", "kl_div"}


def _generic_calls(op):
    """(x) or (x, y), whichever torch accepts for float inputs; None if neither."""
    x, y = torch.rand(2, 3, dtype=torch.float64), torch.rand(2, 3, dtype=torch.float64)
    for call in (lambda o, a, b: o(a, b), lambda o, a, b: o(a)):   # binary first: __add__(x)
        # alone is accepted by torch too
        try:
            call(op, x, y)
        except Exception:  # noqa: BLE001
            continue
        return [(call, None, False)]
    return None


def _plan():
    """op -> list of (call, shapes, positive), for every op in the table."""
    plan, missing = {}, []
    for op in TORCH_TABLE:
        if op in SKIP:
            continue
        calls = CASES.get(op) or _generic_calls(op)
        if calls is None:
            missing.append(_name(op))
        else:
            plan[op] = calls
    return plan, missing


PLAN, MISSING = _plan()


def test_every_op_is_covered():
    assert not MISSING, (f"ops in the dispatch table with no way to call them here: {MISSING}; "
                         f"add a CASES entry (or a SKIP entry with the reason) in this file")


# -- running one example ---------------------------------------------------------------------
def _leaves(v):
    if isinstance(v, (list, tuple)):
        return [t for item in v for t in _leaves(item)]
    return [v]


def _torch_side(call, op, x, y, public_y):
    xs = x.clone().requires_grad_()
    ys = y.clone().requires_grad_() if not public_y else y
    try:
        out = call(op, xs, ys)
    except Exception as exc:  # noqa: BLE001
        return exc, None, None
    outs = _leaves(out)
    diff = [o for o in outs if isinstance(o, torch.Tensor) and o.is_floating_point()
            and o.requires_grad]
    grads = None
    if diff:
        loss = sum((o * _weight(o.shape)).sum() for o in diff)
        wrt = [xs] + ([ys] if not public_y else [])
        try:
            grads = torch.autograd.grad(loss, wrt, allow_unused=True)
        except RuntimeError:                 # torch has no derivative (floor_divide): no
            return None, [o.detach() for o in outs if isinstance(o, torch.Tensor)], None
        grads = [torch.zeros_like(w) if g is None else g for w, g in zip(wrt, grads)]
    return None, [o.detach() if isinstance(o, torch.Tensor) else o for o in outs], grads


def _weight(shape):
    n = 1
    for d in shape:
        n *= d
    return (torch.arange(n, dtype=torch.float64).reshape(shape) % 5 - 2) / 4


def _as_method(op):
    """Tensor.add & co.: on a SecretTensor the method is called (x.add(y)); the table entry
    itself serves torch when a *public* tensor's method meets a secret argument."""
    name = _name(op)
    if not name.startswith("Tensor."):
        return op
    meth = {"__rdiv__": "__rtruediv__"}.get(name.split(".", 1)[1], name.split(".", 1)[1])
    return lambda x, *a, **k: getattr(x, meth)(*a, **k)


def _veil_side(call, op, x, y, public_y, want_grads):
    op = _as_method(op)
    sx = veil.tensor(x if veil.rank() == 0 else None, owner=0).requires_grad_()
    sy = y if public_y else veil.tensor(y if veil.rank() == 1 else None,
                                        owner=1).requires_grad_()
    try:
        out = call(op, sx, sy)
        outs = _leaves(out)
        vals = [o.reveal() if isinstance(o, veil.SecretTensor) else o for o in outs]
        grads = None
        if want_grads:
            diff = [o for o in outs if isinstance(o, veil.SecretTensor)
                    and o.is_floating_point() and o.requires_grad]
            loss = None
            for o in diff:                   # piecewise-constant ops (sign) have no graph
                term = (o * _weight(o.shape)).sum()
                loss = term if loss is None else loss + term
            if loss is not None:
                loss.backward()
            wrt = [sx] + ([sy] if not public_y else [])
            grads = [w.grad.reveal() if w.grad is not None else torch.zeros(w.shape).double()
                     for w in wrt]
        return None, vals, grads
    except Exception as exc:  # noqa: BLE001
        return exc, None, None


def _close(got, want, tol) -> str | None:
    if not isinstance(want, torch.Tensor):
        return None if got == want else f"{got!r} != {want!r}"
    if not isinstance(got, torch.Tensor):
        return f"got {type(got).__name__}, want a tensor"
    if tuple(got.shape) != tuple(want.shape):
        return f"shape {tuple(got.shape)} != {tuple(want.shape)}"
    if got.dtype != want.dtype:
        return f"dtype {got.dtype} != {want.dtype}"
    if not want.numel():
        return None
    if not want.is_floating_point():
        return None if torch.equal(got, want) else "values differ"
    err = ((got.double() - want.double()).abs() - tol * (1 + want.double().abs())).max().item()
    return None if err <= 0 else f"error exceeds {tol:g}(1+|x|) by {err:.3g}"


def _check_all(shape_x, shape_y, public_y, seed):
    g = torch.Generator().manual_seed(seed)
    failures = []
    for op, calls in PLAN.items():
        name = _name(op)
        tol = 3e-2 if name.split(".")[-1] in APPROX else 1e-3
        for i, (call, shapes, positive) in enumerate(calls):
            for sx, sy in shapes or [(shape_x, shape_y)]:
                x = torch.empty(sx, dtype=torch.float64).uniform_(-3, 3, generator=g)
                y = torch.empty(sy, dtype=torch.float64).uniform_(-3, 3, generator=g)
                if positive:
                    x, y = x.abs() + 0.5, y.abs() + 0.5
                where = f"{name} case {i} x{tuple(sx)} y{tuple(sy)}" \
                        f"{' (y public)' if public_y else ''}"
                t_exc, t_out, t_grads = _torch_side(call, op, x, y, public_y)
                v_exc, v_out, v_grads = _veil_side(call, op, x, y, public_y,
                                                   t_grads is not None)
                if t_exc is not None:
                    if v_exc is None:
                        failures.append(f"{where}: torch raised {t_exc!r}, veil did not")
                    elif "internal" in str(v_exc):
                        failures.append(f"{where}: internal error {v_exc!r}")
                    continue
                nan = any(isinstance(o, torch.Tensor) and o.is_floating_point()
                          and not torch.isfinite(o).all() for o in t_out)
                if v_exc is not None and nan and isinstance(v_exc, VeilError):
                    continue                 # torch gave NaN/inf; veil refuses (numerics.md)
                if v_exc is not None:
                    kind = "refused" if isinstance(v_exc, VeilError) else "crashed"
                    failures.append(f"{where}: veil {kind}: {type(v_exc).__name__}: {v_exc}")
                    continue
                if veil.rank() != 0:
                    continue
                if len(v_out) != len(t_out):
                    failures.append(f"{where}: {len(v_out)} outputs, torch {len(t_out)}")
                    continue
                for k, (got, want) in enumerate(zip(v_out, t_out)):
                    bad = _close(got, want, tol)
                    if bad:
                        failures.append(f"{where} output {k}: {bad}")
                for k, (got, want) in enumerate(zip(v_grads or [], t_grads or [])):
                    bad = _close(got, want, 2 * tol)
                    if bad:
                        failures.append(f"{where} grad {'xy'[k]}: {bad}")
    return failures


# One example runs every op (~5-12 s on a loaded 2-core machine): few examples, no
# shrinking (the failure message already lists every mismatching op and shape), and the
# edge cases pinned as explicit examples so every run covers 0-d and zero-size inputs.
# Derandomized: the same examples every run, so CI cannot fail on a draw nobody has seen;
# to explore, raise max_examples and drop derandomize locally.
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate], derandomize=True)
@example(BroadcastableShapes(input_shapes=((), (2, 3)), result_shape=(2, 3)), True, 3, 7)
@example(BroadcastableShapes(input_shapes=((0, 2), (1, 2)), result_shape=(0, 2)), False, 2, 8)
# found by a random draw: an empty public tensor exponent (pow refused it)
@example(BroadcastableShapes(input_shapes=((1, 0, 2), (0, 2)), result_shape=(1, 0, 2)),
         True, 3, 8070)
# and a 0-d base with a (1,) exponent (pow kept the base's shape)
@example(BroadcastableShapes(input_shapes=((), (1,)), result_shape=(1,)), True, 3, 499)
@given(mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=0,
                                     max_side=3),
       st.booleans(), st.sampled_from([2, 3]), st.integers(0, 2 ** 16))
def test_every_op_matches_torch_forward_and_backward(shapes, public_y, parties, seed):
    sx, sy = shapes.input_shapes
    failures = veil.run(_check_all, sx, sy, public_y, seed, parties=parties, seed=seed)[0]
    assert not failures, f"{len(failures)} mismatches:\n" + "\n".join(failures[:40])
