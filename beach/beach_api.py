"""The seed's module path for the blocking client: ``from beach.beach_api import Beach``.

`Beach` lives in `beach.client.blocking`; this module keeps the original's import working.
"""

from beach.client.blocking import Beach

__all__ = ["Beach"]
