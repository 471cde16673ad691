"""The services: one per feature, called alike by the ScaiGrid routes, their /oai/v1 twins and the batch runner.

A service takes a ``Call`` (the runtime, the caller's key, the surface) and a
parsed request, and returns the engine's answer or a ``Stream``; it never sees
FastAPI, Starlette or the URL it was called on. Nothing here imports the
gateway or the batch runner (tests/test_import_graph.py keeps it so).
"""
