"""Thin routes: parse, authorise, call a backend, shape the answer."""
