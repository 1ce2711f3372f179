"""The farm's backing upload servers: FTP with explicit TLS (pyftpdlib) and SFTP (asyncssh).

Cameras upload to these; tests then ask them what arrived (``received_files``, the events,
the control plane's ``/v1/servers/{name}/files``).
"""
