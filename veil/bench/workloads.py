"""Imports every workload module so the registry is complete (one line per area)."""

from . import core_workloads  # noqa: F401
from . import inference_workloads  # noqa: F401
from . import training_workloads  # noqa: F401
from . import function_workloads  # noqa: F401
from . import sql_workloads  # noqa: F401  (issue 11: needs the veil[sql] extra)
