"""The data plane's entry: resolves a qualifier to a version, acquires an instance, runs the
invocation and records what happened."""

from ember.router.router import HttpResponse, InvocationResult, Router

__all__ = ["HttpResponse", "InvocationResult", "Router"]
