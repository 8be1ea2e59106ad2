"""Durable storage: the journal of accepted input and the outbox of deliveries.

`base` is the contract every backend satisfies (Protocols and records); `sqlite` is the embedded
backend. Backends with third-party dependencies (Redis) are imported from their own module only.
"""

from bridge.store.base import (
    CommitHook,
    Delivery,
    DeliveryState,
    Journal,
    JournalEntry,
    NewDelivery,
    Outbox,
    Store,
    action_from_dict,
    action_to_dict,
    new_deliveries,
)
from bridge.store.sqlite import SQLiteStore

__all__ = [
    "CommitHook",
    "Delivery",
    "DeliveryState",
    "Journal",
    "JournalEntry",
    "NewDelivery",
    "Outbox",
    "SQLiteStore",
    "Store",
    "action_from_dict",
    "action_to_dict",
    "new_deliveries",
]
