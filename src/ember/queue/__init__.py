"""Async invocation: a durable queue of events with their task state and dead letters, and
the worker that consumes it through the router."""
