"""Security: who may do what on a shared bus, and what the bus cannot read or forge.

* `beach.security.roles`      ``beach secure init``: NATS users and permissions per role, TLS;
* `beach.security.authority`  a privileged operation's caller: NATS credentials or the admin token;
* `beach.security.audit`      the audit log of privileged operations (a JetStream stream);
* `beach.security.seal`       sealing messages with the shared key (AES-256-GCM, replay window);
* `beach.security.sealedkv`   sealing KV values, bound to their bucket and key;
* `beach.security.keys`       the shared key file; `beach.security.certs`: a CA and certificates.

Access control itself is the NATS server's (`bus-config/`, docs/security.md).
"""
