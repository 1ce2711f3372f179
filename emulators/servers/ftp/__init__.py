"""The farm's FTP server with explicit TLS (AUTH TLS on the same port), built on pyftpdlib,
split by role the way pyftpdlib splits its own handlers:

- ``options``: the scenario keys (``FtpOptions``);
- ``files``: users (the authorizer), the file system, uploads that replace their target whole;
- ``connections``: what both connections share (a failure ends one session, not the server);
- ``control``: the control connection (commands, replies, fault rules, events);
- ``data``: the data connection (resets, size limit, throttle and cut faults, "226" after the
  upload's record is saved);
- ``member``: ``FtpServer``, the farm member (TLS identity, the IO loop's thread, state).

pyftpdlib runs its own select/epoll loop, not asyncio: each server gets a private IOLoop in
its own thread. Whatever the FTP side learns (logins, uploads, refusals) is handed to the
farm's loop, which owns all state; an upload's record is saved before "226" is sent. Every
private pyftpdlib name used lives in ``servers/pyftpdlib_internals.py``.
"""

# Imported first, whatever module of this package is asked for: it loads pyftpdlib with its
# asyncore deprecation warning quieted, so the modules here import pyftpdlib plainly.
from .. import pyftpdlib_internals  # noqa: F401
