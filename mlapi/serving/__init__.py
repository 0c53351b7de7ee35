"""The serving core: model store, handlers, registry and device slots. Knows nothing of HTTP."""
