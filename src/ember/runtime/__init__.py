"""The runtime: the code that runs inside an instance and calls the user's handler.

Standard library and msgpack only, so an instance imports fast and never loads the
server's dependencies. Nothing is imported here: ``python -m ember.runtime.main`` and the
zygote pick the modules they need.
"""
