"""Method table of the smooth functions: SecretTensor gets them through this mixin."""


class FunctionsMixin:
    """Smooth functions as SecretTensor methods (filled in by veil.functions modules)."""
