"""Backends: where a model's requests go. A backend is a URL — a local worker's Unix socket or a remote
OpenAI-compatible server — reached through one transport (``transport.Endpoint``, aiohttp)."""
