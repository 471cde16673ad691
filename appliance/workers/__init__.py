"""One module per engine; each is a small OpenAI-protocol HTTP app run as its own process on a Unix socket.

A worker imports only its own engine library; the gateway imports none of them.
"""
