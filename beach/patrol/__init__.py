"""``python -m beach.patrol CONFIG FILE``: the seed's entry point for patrol (see `beach.patrol.__main__`).

Patrol specs themselves (checking, instances, the spawn of an entry) are `beach.state.patrol`.
"""
