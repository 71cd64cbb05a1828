"""Request plans kept on disk (opt-in): a new process predicts a graph's dealer requests
from its first run.

A graph's request plan (veil.offline.plan) is recorded on its first run in a process;
without a store, a restarted server pays that first run's dealer round trips again
(BERT-base: 187 requests waited for). With ``Config(plan_dir=DIR)`` (``veil run
--plan-dir DIR``) each party keeps its plans in ``DIR/party<rank>/`` and, at the first
run of a graph in a run, all parties agree to follow the stored plan:

1. Each party looks for the file of the graph's *store key*: the graph's tag (a hash of
   its public JSON) and everything else that changes the request sequence (veil's
   version, the protocol, the party count, the `Config` fields in `REQUEST_FIELDS`).
2. It validates the file into veil's own types (`parse`): a missing, corrupt, truncated,
   oversized or hand-edited file is refused with a logged reason (logger
   ``veil.plans``), never an exception; at most `MAX_FILE_BYTES` are read, JSON only
   (no pickle, no eval), every request passes the dealer's own checks
   (veil.offline.requests) and fits together.
3. Every party sends every other the sha256 of its plan's canonical bytes (or nothing):
   one offline round, once per graph and run. The plan is followed only if all digests
   are equal; otherwise nobody follows it and the run records the graph's plan again.
   Parties that followed different plans would predict different requests and fall out
   of step with the dealer (receivers of its replies rotate), hence the agreement.
4. At the end of the graph's first run, each party writes the plan it recorded if it
   differs from the one agreed on (a new file, or a stale one replaced): atomically
   (a temporary file, then a rename), at most `MAX_FILE_BYTES`.

What a file holds is public: the request kinds, their shapes and static arguments, and
mask keys as numbers (relative to the run's first key, or absolute for a weight's): the
same requests party 0 sends the dealer in the clear, which every party can see. No
share, no seed, no value. A stored plan is only a prediction: one that turns out wrong
(the graph changed under the same key, a file edited identically at every party) costs
the dropped look-ahead, as an in-memory plan that does not fit (the dealer checks every
request as before), and is then replaced by the run's own.

The dealer keeps no plan: party 0 sends it predicted requests as ordinary requests.

>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> store = PlanStore(d, rank=0, context={"veil": "0.1.0", "parties": 2})
>>> store.load("graph:ab") is None                   # nothing stored yet
True
>>> plan = [("and", {"shape": [4]}, ()), ("beaver_keyed",
...          {"op": "mul", "shape_a": [4], "shape_b": [4]},
...          (("key_a", ("rel", 0)), ("key_b", ("abs", 3))))]
>>> store.save("graph:ab", plan)
>>> store.load("graph:ab") == [(k, a, keyed) for k, a, keyed in plan]
True
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import tempfile
from pathlib import Path

from ..comm import OFFLINE
from ..comm.limits import MAX_ELEMENTS
from ..errors import PartyError
from . import plan as plan_mod
from .materials import MAX_FUSED_FRAC, RING
from .plan import is_key, materialize
from .requests import MAX_ARGS, MAX_KEY, _WORD, checked_recipe, parse_request

FORMAT = "veil-plan/1"
MAX_FILE_BYTES = 16 << 20    # ~100 B a request: a BERT-base forward (~1,700) is ~0.2 MB
MAX_REL_KEY = 1 << 40        # a run allocates fewer mask keys than this
DIGEST_BYTES = 32
# Config fields that change a run's request sequence (veil.config): part of the store key.
# Every other field must be listed in `OTHER_FIELDS` (a test holds both lists complete).
REQUEST_FIELDS = ("frac_bits", "compare_bits", "truncation")
OTHER_FIELDS = ("timeout", "max_elements", "network", "profile", "plan_dir")

log = logging.getLogger("veil.plans")


class PlanFileError(ValueError):
    """A stored plan that cannot be used (the reason is logged, the file ignored)."""


def key_context(version: str, protocol: str, parties: int, config) -> dict:
    """The public facts besides the graph that fix its request sequence (the store key).

    >>> from veil.config import Config
    >>> key_context("0.1.0", "semi2k", 2, Config())["truncation"]
    'exact'
    """
    ctx = {"veil": str(version), "protocol": str(protocol), "parties": int(parties)}
    for f in REQUEST_FIELDS:
        ctx[f] = getattr(config, f)
    ctx["truncation"] = config.truncation_method(parties)   # what it means at this count
    return ctx


def canonical(obj) -> bytes:
    """The one byte string of a plan document (sorted keys, no spaces): what is hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def to_json(entries: list) -> list:
    """A plan (`plan.template` entries) as JSON arrays: [kind, plain args, [[name, mode,
    key], ...]]."""
    return [[kind, plain, [[name, mode, v] for name, (mode, v) in keyed]]
            for kind, plain, keyed in entries]


class PlanStore:
    """One party's directory of stored plans, ``root/party<rank>``.

    ``context`` (`key_context`) goes into every file's header and its name, so a plan is
    only ever found by a run whose requests it describes.
    """

    def __init__(self, root, rank: int, context: dict,
                 max_elements: int = MAX_ELEMENTS) -> None:
        self.dir = Path(root) / f"party{int(rank)}"
        self.context = dict(context)
        self.max_elements = max_elements

    def __repr__(self) -> str:
        return f"PlanStore({str(self.dir)!r})"

    def header(self, tag: str) -> dict:
        return {"format": FORMAT, "tag": tag, **self.context}

    def path(self, tag: str) -> Path:
        return self.dir / (hashlib.sha256(canonical(self.header(tag))).hexdigest()[:40]
                           + ".json")

    def document(self, tag: str, entries: list) -> dict:
        return {"format": FORMAT, "header": self.header(tag), "requests": to_json(entries)}

    def digest(self, tag: str, entries: list | None) -> bytes:
        """sha256 of the plan's canonical bytes (b"" for no plan): what parties compare."""
        if entries is None:
            return b""
        return hashlib.sha256(canonical(self.document(tag, entries))).digest()

    def load(self, tag: str) -> list | None:
        """The stored plan of ``tag``, validated; None (with a logged reason if a file
        was there) when there is none that can be used."""
        path = self.path(tag)
        try:
            raw = _read(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("veil: cannot read the stored request plan %s (%s); this run "
                        "records the graph's plan again", path, exc.strerror or exc)
            return None
        try:
            return parse(raw, self.header(tag), self.max_elements)
        except PlanFileError as exc:
            reason = str(exc)
        except Exception as exc:          # noqa: BLE001 - a file must never stop a run
            reason = f"malformed ({type(exc).__name__})"
        log.warning("veil: ignoring the stored request plan %s: %s; this run records the "
                    "graph's plan again", path, reason)
        return None

    def save(self, tag: str, entries: list) -> None:
        """Write ``tag``'s plan atomically; a failure is logged, never raised (the run
        goes on: the store only saves time)."""
        path = self.path(tag)
        data = canonical(self.document(tag, entries))
        if len(data) > MAX_FILE_BYTES:
            log.warning("veil: request plan of %d bytes not stored (the limit is %d)",
                        len(data), MAX_FILE_BYTES)
            return
        tmp = None
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".plan-", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)           # readers see the old file or the new, whole
            tmp = None
        except OSError as exc:
            log.warning("veil: cannot store the request plan in %s (%s); runs go on "
                        "without it", self.dir, exc.strerror or exc)
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass


# -- reading a file: untrusted input -----------------------------------------------------
def _read(path: Path) -> bytes:
    """At most `MAX_FILE_BYTES` + 1 bytes of a regular file (a FIFO or device put in
    the file's place would block or never end: refused without reading)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path.name} is not a regular file")
        return f.read(MAX_FILE_BYTES + 1)


def _no_float(text):
    raise PlanFileError(f"holds a non-integer number ({text[:20]})")


def parse(raw: bytes, header: dict, max_elements: int = MAX_ELEMENTS) -> list:
    """A plan file's requests as `plan.template` entries, or `PlanFileError`."""
    if len(raw) > MAX_FILE_BYTES:
        raise PlanFileError(f"larger than {MAX_FILE_BYTES} bytes")
    try:
        doc = json.loads(raw.decode("utf-8"), parse_float=_no_float, parse_constant=_no_float)
    except PlanFileError:
        raise
    except (ValueError, RecursionError) as exc:   # UnicodeDecodeError is a ValueError
        raise PlanFileError(f"not a JSON plan ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or set(doc) != {"format", "header", "requests"}:
        raise PlanFileError("not a veil plan document {format, header, requests}")
    if doc["format"] != FORMAT:
        raise PlanFileError(f"format is not {FORMAT!r}")
    if doc["header"] != header:
        raise PlanFileError("its header (graph, veil version, protocol, parties, Config) "
                            "is not this run's")
    reqs = doc["requests"]
    if not isinstance(reqs, list):
        raise PlanFileError("its requests are not a list")
    if len(reqs) > plan_mod.MAX_PLAN_REQUESTS:
        raise PlanFileError(f"more than {plan_mod.MAX_PLAN_REQUESTS} requests")
    return [_entry(e, i, max_elements, header["parties"]) for i, e in enumerate(reqs)]


def _entry(e, i: int, max_elements: int, parties: int) -> tuple:
    where = f"request {i}"
    if not isinstance(e, list) or len(e) != 3:
        raise PlanFileError(f"{where} is not [kind, args, keys]")
    kind, plain, keyed = e
    if not isinstance(kind, str) or not _WORD.fullmatch(kind) or kind == "mask":
        raise PlanFileError(f"{where} has no valid kind")     # (masks are never planned)
    if not isinstance(plain, dict) or not isinstance(keyed, list) \
            or len(plain) + len(keyed) > MAX_ARGS:
        raise PlanFileError(f"{where}'s arguments are malformed")
    keys = []
    for k in keyed:
        if not (isinstance(k, list) and len(k) == 3 and isinstance(k[0], str)
                and _WORD.fullmatch(k[0]) and is_key(k[0]) and k[1] in ("rel", "abs")
                and type(k[2]) is int
                and 0 <= k[2] <= (MAX_REL_KEY if k[1] == "rel" else MAX_KEY)):
            raise PlanFileError(f"{where} has a malformed mask key")
        keys.append((k[0], (k[1], k[2])))
    names = [name for name, _ in keys]
    if len(set(names)) != len(names) or set(names) & set(plain) \
            or any(is_key(n) and type(v) is int for n, v in plain.items()):
        raise PlanFileError(f"{where} names a mask key twice")
    entry = (kind, plain, tuple(sorted(keys)))
    # The request as a run would make it (keys from 0): the dealer's own checks, then
    # whether its operands fit together (the dealer would fail on it otherwise).
    mkind, args = materialize(entry, 0)
    try:
        kind_, checked = parse_request({"kind": mkind, "args": args}, max_elements, "file")
        rec = checked_recipe(kind_, checked, max_elements, "file", parties)
    except PartyError:
        raise PlanFileError(f"{where} is not a request the dealer serves") from None
    reason = _misfit(kind, checked, rec)
    if reason:
        raise PlanFileError(f"{where}: {reason}")
    return entry


def _misfit(kind: str, args: dict, rec) -> str | None:
    """Why a request that passed the dealer's checks would still fail at the dealer
    (operands that do not fit together, widths out of range), or None."""
    for part in (*rec.randoms, *rec.derived, *rec.keyed):
        if any(d < 0 for d in part.shape):
            return "a negative size"
        if part.domain == RING and not 1 <= part.width <= 64:
            return "a ring width out of 1..64"
    if kind == "cmp" and not 1 <= args["width"] <= 64:
        return "a comparison width out of 1..64"
    if kind == "trunc" and not 1 <= args["frac"] <= MAX_FUSED_FRAC:
        return f"a truncation out of 1..{MAX_FUSED_FRAC} bits"
    if kind in ("beaver", "beaver_keyed"):
        a, b = args["shape_a"], args["shape_b"]
        if args["op"] == "matmul" and (not a or not b or a[-1] != (b[0] if len(b) == 1
                                                                   else b[-2])):
            return "matmul operands whose inner sizes differ"
        if args["op"] == "conv2d":
            groups = (args.get("params") or {}).get("groups", 1)
            if len(b) != 4 or len(a) not in (3, 4) or not isinstance(groups, int) \
                    or groups < 1 or a[-3] != b[1] * groups or b[0] % groups:
                return "conv2d operands whose channels do not fit"
    return None


# -- agreement -----------------------------------------------------------------------------
def agree(comm, digest: bytes) -> bool:
    """One offline round: every party sends every other its plan digest (b"": none).
    True at every party iff all digests are equal and not empty (each party compares
    all the others' with its own, so all reach the same answer)."""
    same = True
    with comm.phase(OFFLINE):
        comm.count_round()
        for p in comm.parties():
            if p != comm.rank:
                comm.send_bytes(p, digest)
        for p in comm.parties():
            if p != comm.rank:
                got = bytes(comm.recv_bytes(p))
                if len(got) not in (0, DIGEST_BYTES):
                    raise PartyError(comm.peer_name(p), f"sent a plan digest of {len(got)} "
                                                        f"bytes, not 0 or {DIGEST_BYTES}")
                same = same and got == digest
    return same and bool(digest)


__all__ = ["PlanStore", "PlanFileError", "agree", "key_context", "parse", "REQUEST_FIELDS",
           "OTHER_FIELDS", "FORMAT", "MAX_FILE_BYTES"]
