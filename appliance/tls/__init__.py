"""HTTPS for the LAN: the box's own certificate authority, the operator's certificate, and serving TLS.

authority.py makes the CA and the server certificate; pem.py reads certificates and keys with sentences for
what is wrong; checks.py decides whether a certificate may be installed; store.py is the TLS directory;
context.py builds the server's SSLContext and reloads it; listener.py accepts TLS (and answers plain HTTP
sent to it); redirect.py is port 80; activation.py takes sockets from systemd; server.py is uvicorn on them.
"""
