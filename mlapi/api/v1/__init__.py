"""/v1: tokens, the caller's account and keys, administration, inference and the model catalogue.

Its OpenAPI document is frozen by contracts/openapi-v1.json: additions only.
"""
