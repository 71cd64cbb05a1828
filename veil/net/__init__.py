"""Real parties: one OS process per party, over TCP with mutually authenticated TLS 1.3.

Layers, bottom up: `cluster` (the cluster file), `certs` (`veil certs`), `tls`
(contexts, pinning), `link` (framed non-blocking links and the hub that drives them: the
`Channel` the metered `Communicator` plugs into), `connect` (set-up and handshake),
`launch` (`veil.run` inside a `veil run` process), `dealer` (the dealer's process),
`supervisor` (`veil run -n N`). See docs/real-machines.md.
"""
