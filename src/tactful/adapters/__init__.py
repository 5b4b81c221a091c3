"""Adapters: bytes to events and back, stores, clocks, Kafka topics."""
