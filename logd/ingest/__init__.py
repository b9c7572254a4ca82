"""Ingest: bytes in. Listening sockets, one task per connection that decodes Forward
messages and waits for the writer's ack, and spools left by clients that exited.

Never touches the log tree: connection tasks hand whole messages to the writer as jobs.
"""
