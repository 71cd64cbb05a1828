"""The dealer works ahead: predict party 0's next requests from the ones it already made.

A training loop asks the dealer for the same sequence of material every step, and a
model's forward asks for the same sequence every batch. Once the sequence has repeated
twice, every party predicts that it goes on repeating; party 0 then sends the predicted
requests ahead of time (one period, at most `AHEAD_COUNT` requests, `AHEAD_REQUEST_BYTES`
of requests and `AHEAD_BYTES` of material not yet used: the bound on the dealer's
buffered work and party 0's memory), so the dealer computes them while the parties are
busy with the online protocol instead of while party 0 waits. A compiled graph does
better: its request plan, recorded on its first run, is known from the first request of
every later run (veil.offline.plan; the same window bounds apply). And on that first run
the graph says where it repeats itself (a transformer's layers: veil.compile.repeats):
from the second layer on, the requests made for the first are copied, keys renamed
(`Repeat`), instead of waiting for the period to show twice.

Prediction needs no message: every party sees the same (public) request sequence, so all
make the same prediction, and when the program asks for something else they all drop
the same predicted entries in the same order (parties 1..n-1 draw and discard their
material; party 0 reads and discards the replies), which keeps every PRG in step with
the dealer. A misprediction costs at most the bounded look-ahead in dealer work and
offline bytes; it never changes a result. The dealer still checks each request as
untrusted input (veil.offline.requests): speculative requests are ordinary requests.

>>> p = Predictor()
>>> for k in "abcabc":
...     p.observe(k)
>>> p.period, p.predict(6), p.predict(7)
(3, 'a', 'b')
>>> q = Predictor()                       # one keyed request a layer: keys 5, 9, 13, ...
>>> for i in range(3):
...     q.observe("mm", (5 + 4 * i, 2 + i))
...     q.observe("cmp")
>>> q.period, q.keys_ready, q.predict(6), q.predict_keys(6)
(2, True, 'mm', (17, 5))
>>> r = Predictor()                       # a block of 2 requests, then its repeat:
>>> r.observe("mm", (40, 7)); r.observe("cmp")     # its own key 40, a weight's key 7
>>> hint = Repeat(src=0, length=2, start=r.count, shift=3, lo=40, keymap={7: 8})
>>> hint.predict(r, 2), hint.predict(r, 3), hint.predict(r, 4)
(('mm', (43, 8)), ('cmp', ()), None)
"""

from __future__ import annotations

from collections import deque

AHEAD_COUNT = 1024         # predicted requests in flight at most
AHEAD_REQUEST_BYTES = 40 << 10   # their requests' bytes: the dealer buffers 128 KiB of
                           # unread requests (veil.net.dealer), and after a misprediction
                           # the dropped ones may still sit there next to the new ones
AHEAD_BYTES = 128 << 20    # material held for predicted requests not yet used (party 0's
                           # random parts and the dealer's replies), at most
GUESS_BYTES = 32 << 20     # the same for a period's guesses: at the end of a repeating
                           # stretch (a forward's last layer) what was sent is dropped
MAX_PERIOD = 4096          # longest repeating sequence looked for
CANDIDATES = 8             # previous occurrences of the last request tried as a period


class Predictor:
    """The request sequence so far, and the period it repeats with (None: not found).

    A request is observed as its *shape* (kind and arguments without mask keys) and the
    tuple of its mask keys. The period is found on shapes; keys are predicted by
    continuing their step from one period to the next (a forward's layers, or a loop's
    steps, allocate the same number of fresh keys each), and only once that rule has
    held for a whole period (`keys_ready`): a program whose keys do not follow it is
    never guessed at twice.

    Only the last ``2 * MAX_PERIOD`` requests are kept (all a period check looks at), so a
    long training run costs bounded memory.
    """

    def __init__(self) -> None:
        self.seq: list[str] = []                      # the most recent requests' shapes
        self.keys: list[tuple] = []                   # and their mask keys
        self.count = 0                                # requests observed in all
        self.period: int | None = None
        self._base = 0                                # position of seq[0]
        self._pos: dict[str, deque] = {}
        self._confirmed = 0                           # keys that followed the rule

    def observe(self, key: str, keys: tuple = ()) -> None:
        if self.period is not None:
            if key != self.predict(self.count):
                self.period = None                    # the pattern broke: look again
            elif keys == self.predict_keys(self.count):
                self._confirmed += 1
            else:
                self._confirmed = 0                   # shapes repeat, keys do not (yet)
        self.seq.append(key)
        self.keys.append(keys)
        self.count += 1
        if len(self.seq) > 4 * MAX_PERIOD:
            drop = len(self.seq) - 2 * MAX_PERIOD
            del self.seq[:drop]
            del self.keys[:drop]
            self._base += drop
            # forget requests no longer in the window (keyed requests never repeat)
            self._pos = {k: q for k, q in self._pos.items() if q[-1] >= self._base}
        pos = self._pos.get(key)
        if pos is None:                               # (not setdefault: that would build
            pos = self._pos[key] = deque(maxlen=CANDIDATES + 1)   # a deque every call)
        pos.append(self.count - 1)
        if self.period is None:
            self.period = self._detect(pos)
            if self.period is not None:
                self._confirmed = self._count_confirmed()

    def forget_period(self) -> None:
        self.period = None

    @property
    def keys_ready(self) -> bool:
        """Whether predicted keys can be trusted: the rule held for the last period."""
        return self.period is not None and self._confirmed >= self.period

    def _at(self, i: int) -> str:
        return self.seq[i - self._base]

    def _keys_at(self, i: int) -> tuple:
        return self.keys[i - self._base]

    def _detect(self, pos: deque) -> int | None:
        n = self.count
        for p in reversed(list(pos)[:-1]):            # nearest earlier occurrence first
            period = n - 1 - p
            if period > MAX_PERIOD or 2 * period > n:
                return None
            a, b = n - period - self._base, n - 2 * period - self._base
            if self.seq[a:a + period] == self.seq[b:b + period]:   # (in the window:
                return period                                       # 2 period <= n)
        return None

    def _count_confirmed(self) -> int:
        """How many of the latest requests (up to a period) had the keys the rule gives."""
        p, n = self.period, 0
        while n < p:
            i = self.count - 1 - n
            k = self._keys_at(i)
            if k and (i - 2 * p < self._base or k != self._extrapolate(i)):
                break
            n += 1
        return n

    def _extrapolate(self, i: int) -> tuple:
        a = self._keys_at(i - self.period)
        if not a:                                     # an unkeyed request: the common case
            return ()
        b = self._keys_at(i - 2 * self.period)
        return tuple(2 * x - y for x, y in zip(a, b)) if len(a) == len(b) else ()

    def predict(self, n: int) -> str:
        """The request shape expected at position ``n`` (>= count) if the period holds."""
        i = n - self.period
        while i >= self.count:
            i -= self.period
        return self._at(i)

    def predict_keys(self, n: int) -> tuple | None:
        """The mask keys expected at position ``n`` (count <= n < count + period): each
        key moves by as much as it did over the period before. None if that cannot be
        said (too little history, or a key would be negative)."""
        if n - 2 * self.period < self._base or n - self.period >= self.count:
            return None
        out = self._extrapolate(n)
        return out if all(k >= 0 for k in out) else None


class Repeat:
    """A hint from the program: the ``length`` requests from position ``start`` on
    repeat those made from position ``src`` on, with their mask keys renamed.

    Keys the source stretch allocated itself (``>= lo``) move by ``shift``, the number of
    keys allocated since it began (the repeat allocates the same ones in the same order);
    keys of values from before it (a layer's weights, the previous layer's output) are
    renamed by ``keymap`` (the repeat's own weights and input), others kept. The program
    knows this from its structure (veil.compile.repeats), so a repeat is predicted from
    its first request, where the period predictor needs to see it twice, then once more
    for its keys. Like every prediction it may be wrong (the dealer's reply is then
    dropped), never a result.
    """

    __slots__ = ("src", "length", "start", "shift", "lo", "keymap")

    def __init__(self, src: int, length: int, start: int, shift: int, lo: int,
                 keymap: dict) -> None:
        self.src, self.length, self.start = src, length, start
        self.shift, self.lo, self.keymap = shift, lo, keymap

    def done(self, count: int) -> bool:
        """Whether every request it predicts has been made (``count`` made so far)."""
        return count >= self.start + self.length

    def predict(self, pred: Predictor, n: int) -> tuple[str, tuple] | None:
        """(shape, mask keys) expected at position ``n``, or None: outside the repeat, or
        its source has left ``pred``'s window."""
        off = n - self.start
        i = self.src + off
        if not 0 <= off < self.length or i < pred._base:
            return None
        keys = tuple(self.keymap.get(k, k + self.shift if k >= self.lo else k)
                     for k in pred._keys_at(i))
        return pred._at(i), keys
