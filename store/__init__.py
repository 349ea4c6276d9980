"""The storage adapters: the event log on SQLite or PostgreSQL, and what keeps it.

Depends on the domain only; the write side (commands/) and the read side (projections/) reach
the database through :class:`tollbook.store.eventstore.EventStore`.
"""
