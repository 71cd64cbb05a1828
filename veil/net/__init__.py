"""Real parties: one OS process per party, over TCP with mutually authenticated TLS 1.3.

Modules, bottom up: `cluster` (the cluster file), `certs` (`veil certs`), `tls` (TLS
contexts), `link` (framed links: the `Channel` the metered `Communicator` plugs into),
`hub` (the one non-blocking loop that drives all of a process's links), `connect`
(set-up, handshake, certificate pinning), `launch` (`veil.run` inside a `veil run`
process), `dealer` (the dealer's process), `supervisor` (`veil run -n N`), `loopback`
(a throw-away local cluster). See docs/real-machines.md.
"""
