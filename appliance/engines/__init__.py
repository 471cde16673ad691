"""What the appliance knows about each engine, in one place: ``registry.ENGINES`` (imports no engine library)."""
