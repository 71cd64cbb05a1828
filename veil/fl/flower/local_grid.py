"""``LocalGrid``: a Flower ``Grid`` that delivers messages to a ``ClientApp`` in this
process, one persistent ``Context`` per node — Flower's simulation without Ray.

For tests and for the benchmark's fast path; the same ServerApp code runs unchanged on
``flwr.simulation.run_simulation`` (Ray) and on a real SuperLink. ``drop(node, stage)``
lets a test make a node vanish (no reply, as on a timeout) at a chosen stage.

Messages are round-tripped through Flower's own protobuf serialisation, so the client
sees exactly what would cross a wire and nothing is shared by reference.
"""

from __future__ import annotations

from typing import Callable, Iterable

from flwr.app import Context, Error, Message, RecordDict
from flwr.serverapp import Grid


class LocalGrid(Grid):
    """``LocalGrid(app, num_nodes)``: nodes 1..num_nodes each run ``app``.

    >>> from flwr.clientapp import ClientApp
    >>> g = LocalGrid(ClientApp(), 3)
    >>> sorted(g.get_node_ids())
    [1, 2, 3]
    """

    def __init__(self, app, num_nodes: int, *, node_config: Callable[[int], dict] | None = None,
                 drop: Callable[[int, str], bool] | None = None):
        self.app, self._drop = app, drop or (lambda node, stage: False)
        self.contexts = {
            v: Context(run_id=1, node_id=v, node_config=(node_config(v) if node_config else {}),
                       state=RecordDict(), run_config={})
            for v in range(1, num_nodes + 1)}
        self._replies: dict[str, Message] = {}
        self._n = 0
        _set_task_identity()

    def set_run(self, run) -> None:
        self._run = run

    @property
    def run(self):
        return getattr(self, "_run", None)

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):
        return Message(content, dst_node_id=dst_node_id, message_type=message_type,
                       group_id=group_id, ttl=ttl)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for m in messages:
            self._n += 1
            mid = f"m{self._n}"
            m.metadata.__dict__["_message_id"] = mid
            v = m.metadata.dst_node_id
            stage = _stage(m)
            if v not in self.contexts or self._drop(v, stage):
                continue                                     # no reply: a timeout
            try:
                reply = self.app(_wire(m), self.contexts[v])
            except Exception as e:                            # what Flower's runtime does
                reply = Message(Error(code=0, reason=f"{type(e).__name__}: {e}"), reply_to=m)
            reply.metadata.__dict__["_src_node_id"] = v
            self._replies[mid] = reply
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(self, messages, *, timeout=None) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))


def _set_task_identity() -> None:
    """Flower's runtime names the running task before a ServerApp builds messages; this
    grid plays the runtime, so it names one (run 1, the SuperLink's node) if none is set."""
    from flwr.supercore.task_identity import TaskIdentity
    for attr, value in (("_run_id", 1), ("_node_id", 1), ("_task_id", 0)):
        if TaskIdentity.__dict__.get(attr) is None:
            setattr(TaskIdentity, attr.lstrip("_"), value)


def _stage(m: Message) -> str:
    rec = m.content.config_records.get("veil.secagg") if m.has_content() else None
    return rec.get("stage", "") if rec is not None else m.metadata.message_type


def _wire(m: Message) -> Message:
    """The message as the receiving node would decode it from the wire."""
    from flwr.common.serde import message_from_proto, message_to_proto
    return message_from_proto(message_to_proto(m))
