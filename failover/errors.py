"""What an operator's failover request meets when it cannot be carried out."""


class FailoverError(Exception):
    """An operator's request that cannot be carried out; the message says why."""
