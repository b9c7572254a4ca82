"""Control: the daemon's side of the control socket. Requests are checked and replies
shaped without I/O (`requests`); `server` runs them and `queries` reads the index.

Talks to the writer only through jobs and the small interface the daemon passes in.
"""
