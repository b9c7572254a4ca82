"""Index: the books. ``index.sqlite3`` (registry of runs, sessions, calls and the events
index), the lifecycle of each unit, the canonical event line, and the rebuild from files.

Opens no sockets and knows nothing of connections; readers open their own SQLite handles.
"""
