"""Realms' code on the bus, for nodes without a shared filesystem.

* `beach.code.bundle`  packing a realm's directory into a deterministic archive, unpacking it safely,
  and a node's cache of bundles;
* `beach.code.store`   bundles in the JetStream object store, versions in the desired state;
* `beach.code.deploy`  ``beach deploy``: pack, upload, record the version.
"""
