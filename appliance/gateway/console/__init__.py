"""The web console: static files served by the gateway at /console/, talking to the public API only."""
