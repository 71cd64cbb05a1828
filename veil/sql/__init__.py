"""veil.sql: one SQL query over several parties' tables, on exact secret integers.

Each owner's single-party work runs in its own DuckDB; joins across parties align rows
with private set intersection (veil.psi); what crosses parties runs on secret shares as
exact ring integers (no fixed point, no truncation); only the result is revealed, to
the party named by ``reveal_to``. See docs/sql.md for the supported SQL, the policies
and what each step discloses, and `Session` for an example.
"""

from .plan import UnsupportedSQL
from .policy import Policy, PolicyError
from .session import Session

__all__ = ["Session", "Policy", "PolicyError", "UnsupportedSQL"]
