"""Use cases of the control plane: the lifecycle rules of functions, versions and aliases."""

from ember.control.functions import FunctionService

__all__ = ["FunctionService"]
