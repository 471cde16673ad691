"""The media store: generated files under the state directory, reachable only through random, expiring tokens."""
