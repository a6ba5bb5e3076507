"""Failover: protection, settings, events and their state machine, restoration."""
