"""`logd-ctl`: the operator's command, a blocking client of the control socket.

Imports only the control requests and the client's wire codec, never the daemon's side.
"""
