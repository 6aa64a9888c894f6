"""Cloud-provider gateway services and the shared service kit."""
