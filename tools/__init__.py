"""Small commands shipped in the container image next to the services."""
