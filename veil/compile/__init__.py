"""Secure inference of unmodified PyTorch models: capture, lower, run.

`veil.secure(model, owner=p, example_input=x)` captures the model at its owner with
torch.export (Core ATen ops), folds BatchNorm and constants, sends the graph (public) to
the other parties and secret-shares the weights. The result runs the graph on secret
inputs, one lowering rule per ATen op (veil.compile.lowering.LOWERINGS).
"""

from . import rules_attention, rules_elementwise, rules_nn, rules_shape  # noqa: F401  (table)
from . import rules_extra  # noqa: F401,E402  (issue 10 ops)
from .capture import capture
from .graph import Graph
from .interpreter import Interpreter, LoweringError
from .lowering import LOWERINGS, register_lowering
from .secure import SecureModule, secure
from .decoder import SecureDecoder, secure_decoder  # noqa: E402  (issue 15: KV-cache generation)
from .support import UnsupportedOpError, check_supported

__all__ = ["secure", "SecureModule", "capture", "Graph", "Interpreter", "LoweringError", "LOWERINGS",
           "register_lowering", "UnsupportedOpError", "check_supported"]
__all__ += ["secure_decoder", "SecureDecoder"]
