"""Real parties: one OS process per party, over TCP with mutually authenticated TLS 1.3.

Modules, bottom up: `files` (key and certificate files: 0600, never through a link),
`cluster` (the cluster file and its pins), `certs` (`veil certs`), `tls` (TLS contexts),
`abort` (what a failing party may tell its peers), `link` (framed links: the `Channel` the
metered `Communicator` plugs into), `hub` (the one non-blocking loop that drives all of a
process's links), `connect` (set-up, handshake, certificate pinning), `launch` (`veil.run`
inside a `veil run` process), `dealer` (the dealer's process), `supervisor`
(`veil run -n N`), `loopback` (a throw-away local cluster). See docs/real-machines.md;
what a peer or a stranger can and cannot do to a party is in docs/security.md.
"""
