"""Tenancy: the box is the one partner; tenants share it, users belong to a tenant, keys act for a user.

- roles.py: the built-in roles and what each grants (the permissions of appliance/permissions.py);
- store.py: tenants and users in the state DB, with their model allow-lists, rate limits and budgets;
- caller.py: who a request is (key, user, tenant, what they may do) and the cache that answers it per request;
- audit.py: the audit log, append-only and hash-chained, and its verification.
"""
