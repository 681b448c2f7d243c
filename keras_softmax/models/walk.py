"""Walking a model's layers, nested models included."""

from __future__ import annotations


def all_layers(model) -> list:
    """Every layer of ``model``, a nested model's own layers after it, each once, in order."""
    found, seen = [], set()

    def walk(layer):
        for inner in getattr(layer, "layers", []):
            if id(inner) not in seen:
                seen.add(id(inner))
                found.append(inner)
                walk(inner)

    walk(model)
    return found
