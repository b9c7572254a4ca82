"""logd: a sidecar daemon that owns an application's logs.

Producers hand records to a local socket (Fluentd Forward protocol); the daemon routes
them into run, session and call files and the canonical event log, and keeps the index.
"""

__version__ = "0.1.0"
