"""Pydantic models of every request and response of the contract (shared/API.md), apart from serving logic."""
