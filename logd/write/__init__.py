"""Write: the one writer. Normalizes and deduplicates each batch, routes records (pure),
renders their lines and writes every file under the root; rotation happens here.

Never imports ingest/ or control/: it sees jobs, not sockets or requests.
"""
