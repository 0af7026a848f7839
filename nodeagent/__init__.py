"""The beach node agent: the per-machine daemon that runs actor hosts and executes spawns."""
