"""Private set intersection: align two parties' rows on a (multi-column) key.

One function, `psi`, used by SQL joins (veil.sql) and for aligning vertically split
training data. SPMD: the two key holders pass their keys, every other party passes
``None`` and gets ``None`` back.

>>> import veil
>>> def job():
...     keys = {0: ["ann", "bob", "cy", "bob"], 1: ["dan", "bob", "ann"]}.get(veil.rank())
...     return veil.psi(keys, parties=(0, 1))
>>> [r.tolist() for r in veil.run(job, parties=2)][0] in ([0, 1, 3], [1, 3, 0])
True

Two protocols (``protocol=``): ``"rr22"`` — RR22 from SecretFlow's `spu.libpsi`, run in
its own environment as a subprocess (veil/psi/rr22.py; ~15x faster), and ``"ecdh"`` —
ECDH over X25519 with `cryptography` (veil/psi/ecdh.py), which installs everywhere.
``"auto"`` (default) takes RR22 when both key holders have it and a side has at least
`RR22_MIN_KEYS` distinct keys (below, ECDH's lack of start-up wins), else ECDH; pass
``info={}`` to learn which ran.

What it discloses (either protocol; see the two files for the threat models): to both key
holders, the number of distinct keys of the other, which of their own keys are in the
intersection, and — only when a side has duplicated keys — how many rows the other side
has for each common key (needed to lay out the many-to-many join). Nothing reaches the
other parties.
"""

from __future__ import annotations

import datetime
import decimal

import numpy as np

from ..comm.limits import check_count
from ..context import current
from ..errors import PartyError, ProtocolUsageError
from .ecdh import ecdh_intersect
from .rr22 import PSIBackendError, rr22_intersect
from .rr22 import available as rr22_available

PROTOCOLS = ("auto", "rr22", "ecdh")


def _atom(v) -> bytes:
    """One key value as canonical bytes: equal SQL values give equal bytes at both sides."""
    if v is None or (isinstance(v, float) and v != v):
        raise ProtocolUsageError("a join key has NULLs: NULL never matches in SQL; filter "
                                 "them out (WHERE key IS NOT NULL) before joining")
    if isinstance(v, (bool, np.bool_)):
        return b"i" + str(int(v)).encode()
    if isinstance(v, (int, np.integer)):
        return b"i" + str(int(v)).encode()
    if isinstance(v, (float, np.floating, decimal.Decimal)):
        d = decimal.Decimal(str(v)) if not isinstance(v, decimal.Decimal) else v
        if d == d.to_integral_value():
            return b"i" + str(int(d)).encode()
        return b"d" + str(d.normalize()).encode()
    if isinstance(v, str):
        return b"s" + v.encode()
    if isinstance(v, (datetime.date, datetime.datetime)):
        return b"t" + v.isoformat().encode()
    if isinstance(v, bytes):
        return b"b" + v
    raise ProtocolUsageError(f"join keys of type {type(v).__name__} are not supported")


def canonical_keys(keys) -> list[bytes]:
    """Rows of a key (sequence of scalars, of tuples, or a 2-D array/DataFrame) as bytes."""
    if hasattr(keys, "itertuples"):                          # pandas DataFrame
        rows = list(keys.itertuples(index=False, name=None))
    else:
        rows = list(keys.tolist() if isinstance(keys, np.ndarray) else keys)
    out = []
    for r in rows:
        parts = [_atom(x) for x in (r if isinstance(r, (tuple, list)) else (r,))]
        # Length-prefixed, so ("a", "bc") and ("ab", "c") differ.
        out.append(b"".join(len(p).to_bytes(4, "little") + p for p in parts))
    return out


RR22_MIN_KEYS = 50_000   # "auto": below this, ECDH's lack of start-up (~3 s) wins


def _choose(comm, peer: int, protocol: str, n: int) -> str:
    """Both key holders agree on the protocol (one round; discloses RR22 availability and
    this side's number of distinct keys, which either PSI discloses anyway)."""
    if protocol not in PROTOCOLS:
        raise ProtocolUsageError(f"protocol must be one of {', '.join(PROTOCOLS)}, "
                                 f"got {protocol!r}")
    mine = (protocol, protocol != "ecdh" and rr22_available(), n)
    comm.count_round()
    comm.send_obj(peer, list(mine))
    theirs = comm.recv_obj(peer)
    if not (isinstance(theirs, list) and len(theirs) == 3 and theirs[0] in PROTOCOLS
            and isinstance(theirs[1], bool) and isinstance(theirs[2], int)
            and not isinstance(theirs[2], bool) and theirs[2] >= 0):
        raise PartyError(comm.peer_name(peer), "sent a malformed PSI protocol choice")
    if protocol != theirs[0]:
        raise ProtocolUsageError(f"the key holders asked for different PSI protocols "
                                 f"({protocol!r} here, {theirs[0]!r} at "
                                 f"{comm.peer_name(peer)}): pass the same protocol=")
    both = mine[1] and theirs[1]
    if protocol == "rr22" and not both:
        where = "this party" if not mine[1] else comm.peer_name(peer)
        raise PSIBackendError(f"protocol='rr22' is not available at {where}: run `make "
                              f"psi-env` there (or set VEIL_PSI_PYTHON), or pass "
                              f"protocol='ecdh'")
    big = max(n, theirs[2]) >= RR22_MIN_KEYS
    return "rr22" if (protocol == "rr22" or (protocol == "auto" and both and big)) else "ecdh"


def psi(keys, parties: tuple[int, int] = (0, 1), *, protocol: str = "auto",
        info: dict | None = None) -> np.ndarray | None:
    """This party's row positions of the inner equi-join on ``keys``, in a common order.

    Both key holders get arrays of equal length: row i of the join pairs the first
    party's row ``out0[i]`` with the second's ``out1[i]``. Duplicated keys give the
    many-to-many join (all pairs), empty intersections an empty array. Multi-column keys:
    pass tuples or a DataFrame. Other parties pass ``None`` and get ``None``.
    ``protocol``: "auto" (RR22 if both key holders have it, else ECDH), "rr22" or "ecdh";
    both holders pass the same. ``info``: a dict to receive ``protocol`` (the one that
    ran), ``common`` (the number of common distinct keys) and, for RR22, ``seconds``
    (preparing the input, the worker, checking its result).
    """
    ctx = current()
    a, b = parties
    if a == b or not all(0 <= p < ctx.world_size for p in parties):
        raise ProtocolUsageError(f"psi needs two distinct parties of 0..{ctx.world_size - 1}, "
                                 f"got {parties}")
    if ctx.rank not in parties:
        return None
    if keys is None:
        raise ProtocolUsageError(f"party {ctx.rank} takes part in this PSI: pass its keys")
    comm, peer = ctx.comm, b if ctx.rank == a else a
    distinct, codes = distinct_keys(keys)
    chosen = _choose(comm, peer, protocol, len(distinct))
    if chosen == "rr22":
        timings = {}
        common = rr22_intersect(comm, peer, distinct, first=ctx.rank == a, timings=timings)
        if info is not None:
            info["seconds"] = timings
    else:
        common = ecdh_intersect(comm, peer, list(distinct))
    if info is not None:
        info.update(protocol=chosen, common=len(common))
    common = np.asarray(common, dtype=np.int64)
    count = np.bincount(codes, minlength=len(distinct)) if len(codes) else \
        np.zeros(len(distinct), np.int64)
    mine = count[common]
    # One round: do the multiplicities matter (a duplicated common key on either side)?
    comm.count_round()
    dup = bool((mine > 1).any())
    comm.send_obj(peer, dup)
    peer_dup = comm.recv_obj(peer)
    if not isinstance(peer_dup, bool):
        raise PartyError(comm.peer_name(peer), "sent a malformed PSI message")
    theirs = np.ones(len(common), np.int64)
    if dup or peer_dup:
        # Discloses, per common key, this side's row count to the peer (join layout).
        comm.count_round()
        comm.send_bytes(peer, mine.astype("<i8").tobytes())
        buf = comm.recv_bytes(peer)
        if len(buf) != 8 * len(common):
            raise PartyError(comm.peer_name(peer), "sent malformed PSI multiplicities")
        theirs = np.frombuffer(buf, dtype="<i8").astype(np.int64)
        if len(theirs) and (theirs.min() < 1 or theirs.max() > 1 << 40):
            raise PartyError(comm.peer_name(peer), "sent malformed PSI multiplicities")
        # the joined layout has sum(mine[k] * theirs[k]) rows: bound it before building it
        check_count(int((mine * theirs).sum()), ctx.config.max_elements,
                    "a join size (rows)", comm.peer_name(peer))
    return join_layout(codes, common, mine, theirs, first=ctx.rank == a)


class IntKeys:
    """Distinct integer keys, turned into canonical bytes one at a time (10^7 keys as
    bytes objects would take ~0.5 GB; RR22 needs only their digests)."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self):
        for v in self.values.tolist():
            p = b"i" + str(int(v)).encode()             # = _atom(v), framed as in
            yield len(p).to_bytes(4, "little") + p      # canonical_keys


def distinct_keys(keys) -> tuple[list[bytes] | IntKeys, np.ndarray]:
    """(distinct canonical keys, each row's index into them). Integer arrays go through
    numpy (same canonical bytes as the general path, computed once per distinct value)."""
    if isinstance(keys, np.ndarray) and keys.ndim == 1 and keys.dtype.kind in "iub":
        uniq, codes = np.unique(keys, return_inverse=True)
        return IntKeys(uniq), codes.astype(np.int64).reshape(-1)
    index: dict[bytes, int] = {}
    codes = [index.setdefault(k, len(index)) for k in canonical_keys(keys)]
    return list(index), np.asarray(codes, dtype=np.int64)


def join_layout(codes: np.ndarray, common: np.ndarray, mine: np.ndarray,
                theirs: np.ndarray, first: bool) -> np.ndarray:
    """Row positions of the many-to-many join, key by key in the common order.

    Per common key with ``mine`` rows here and ``theirs`` at the peer, the pairs run in
    row-major order (first party's row outer) at both sides: the first party repeats
    each of its rows ``theirs`` times, the second tiles its rows ``theirs`` times (the
    first party's count).
    """
    order = np.argsort(codes, kind="stable")             # rows grouped by distinct key
    starts = np.cumsum(np.bincount(codes)) - np.bincount(codes) if len(codes) else codes
    seg = starts[common]                                   # where each common key's rows start
    c, t = mine.astype(np.int64), theirs.astype(np.int64)
    # rows of the common keys, concatenated in the common order
    within = np.arange(int(c.sum()), dtype=np.int64) - np.repeat(np.cumsum(c) - c, c)
    rows = order[np.repeat(seg, c) + within]
    if first:
        return rows[np.repeat(np.arange(len(rows)), np.repeat(t, c))] if len(rows) else rows
    sizes = c * t
    k = np.arange(int(sizes.sum()), dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    seg_in = np.repeat(np.cumsum(c) - c, sizes)
    return rows[seg_in + k % np.repeat(c, sizes)] if len(k) else k


__all__ = ["psi", "canonical_keys", "PROTOCOLS", "PSIBackendError"]
