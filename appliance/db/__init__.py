"""The state DB: API keys now; usage and batch jobs as they come. SQLite by default, any SQLAlchemy URL."""
