"""The model: claims, incidents and documents as aggregates whose history is their events.

Pure: no storage, no command line. Each module holds one aggregate: its events (frozen pydantic
models that validate themselves), its state, the decisions that produce events, and ``evolve``.
"""
