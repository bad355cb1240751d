"""A layer module: shared code any function listing the layer can import."""


def greet(name: str) -> str:
    return f"Hello from a layer, {name}!"
