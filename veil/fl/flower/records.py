"""Message layout shared by the veil server loop and the client mod, and the validated
conversions between Flower records and the secagg core's plain values.

Every record a peer sends is parsed here into exact types and lengths before it reaches
the protocol; nothing is deserialised by a generic loader.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import Array, ArrayRecord

from ..secagg import FixedPoint, SecAggConfig

SECAGG = "veil.secagg"          # ConfigRecord: stage and the stage's payload
MASKED = "veil.masked"          # ArrayRecord: the masked vector (stage 'masked_input')
STATE = "veil.secagg.state"     # ConfigRecord in the client's Context.state
STAGES = ("advertise", "share_keys", "masked_input", "unmask", "aggregators")
MODES = ("weighted", "dp")


def config_to_record(cfg: SecAggConfig, round_id: bytes, mode: str, clip: float,
                     noise_std: float, ddg_bits: int = 0, ddg_bound: float = 0.0) -> dict:
    """``ddg_bits`` > 0: distributed discrete Gaussian on the grid 2^-ddg_bits, rounded
    norm bound ``ddg_bound`` and ``noise_std`` in grid steps (:mod:`veil.dp.discrete`)."""
    fp = cfg.fixed_point
    return {"round_id": round_id, "vector_len": cfg.vector_len,
            "threshold_int": cfg.threshold if isinstance(cfg.threshold, int) else 0,
            "threshold_frac": float(cfg.threshold) if isinstance(cfg.threshold, float) else 0.0,
            "frac_bits": fp.frac_bits, "bound": float(fp.bound), "max_clients": fp.max_clients,
            "min_survivors": cfg.min_survivors, "mode": mode, "clip": float(clip),
            "noise_std": float(noise_std), "ddg_bits": int(ddg_bits),
            "ddg_bound": float(ddg_bound)}


def record_to_config(r) -> tuple[SecAggConfig, dict]:
    """Parse the server's round parameters; raises ValueError naming a bad field."""
    def get(k, typ):
        v = r.get(k)
        if type(v) is not typ:
            raise ValueError(f"secure aggregation config field '{k}' must be {typ.__name__}")
        return v
    thr = get("threshold_int", int) or get("threshold_frac", float)
    cfg = SecAggConfig(vector_len=get("vector_len", int), threshold=thr,
                       fixed_point=FixedPoint(get("frac_bits", int), get("bound", float),
                                              get("max_clients", int)),
                       min_survivors=get("min_survivors", int))
    extra = {"round_id": get("round_id", bytes), "mode": get("mode", str),
             "clip": get("clip", float), "noise_std": get("noise_std", float),
             "ddg_bits": get("ddg_bits", int), "ddg_bound": get("ddg_bound", float)}
    if extra["mode"] not in MODES or len(extra["round_id"]) != 16:
        raise ValueError("secure aggregation config has a bad mode or round id")
    if not 0 <= extra["ddg_bits"] <= cfg.fixed_point.frac_bits:
        raise ValueError("ddg_bits must be in 0..frac_bits (the grid must be exact in the "
                         "fixed-point encoding)")
    return cfg, extra


def int_list(r, key: str) -> list[int]:
    v = r.get(key, [])
    if not isinstance(v, list) or not all(type(x) is int for x in v):
        raise ValueError(f"field '{key}' must be a list of ints")
    return v


def bytes_list(r, key: str, n: int) -> list[bytes]:
    v = r.get(key, [])
    if not isinstance(v, list) or len(v) != n or not all(isinstance(x, bytes) for x in v):
        raise ValueError(f"field '{key}' must be a list of {n} byte strings")
    return v


def pack_map(d: dict[int, bytes], ids_key="ids", vals_key="vals") -> dict:
    ids = sorted(d)
    return {ids_key: ids, vals_key: [d[i] for i in ids]}


def unpack_map(r, ids_key="ids", vals_key="vals") -> dict[int, bytes]:
    ids = int_list(r, ids_key)
    if len(set(ids)) != len(ids):
        raise ValueError(f"field '{ids_key}' repeats an id")
    return dict(zip(ids, bytes_list(r, vals_key, len(ids))))


def vector_to_record(y: torch.Tensor) -> ArrayRecord:
    return ArrayRecord({"y": Array(y.numpy())})


def record_to_vector(rec) -> torch.Tensor:
    """The masked vector a client sent, or ValueError if it is not one int64 array."""
    if not isinstance(rec, ArrayRecord) or list(rec.keys()) != ["y"]:
        raise ValueError("masked input must be an ArrayRecord holding one array 'y'")
    a = rec["y"]
    if a.dtype != str(np.dtype(np.int64)) or len(a.shape) != 1:
        raise ValueError("masked input must be a flat int64 array")
    return torch.from_numpy(np.array(a.numpy(), dtype=np.int64, copy=True))


def flatten(arrays: ArrayRecord) -> tuple[torch.Tensor, list[tuple[str, tuple, str]]]:
    """An ArrayRecord as one float64 vector, and the layout to undo it."""
    layout, parts = [], []
    for k, a in arrays.items():
        x = a.numpy()
        layout.append((k, tuple(x.shape), str(x.dtype)))
        parts.append(torch.from_numpy(np.asarray(x, dtype=np.float64).reshape(-1)))
    return (torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)), layout


def unflatten(vec: torch.Tensor, layout) -> ArrayRecord:
    out, i = {}, 0
    for k, shape, dtype in layout:
        n = int(np.prod(shape, dtype=np.int64))
        out[k] = Array(vec[i:i + n].numpy().reshape(shape).astype(dtype))
        i += n
    return ArrayRecord(out)
