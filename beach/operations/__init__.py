"""Cluster operations for an administrator, over a client.

* `beach.operations.rollout`  replacing running actors without losing a request (rollout, drain);
* `beach.operations.backup`   the desired state and the code, saved to a file and restored.
"""
