"""The inference appliance: gateway, supervisor and engine workers."""
