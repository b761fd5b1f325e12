"""The engine: the long-running loop, executors, and ``relia up``."""
