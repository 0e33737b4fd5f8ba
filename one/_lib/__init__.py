"""Private building blocks shared by the public modules (no ONE-specific logic)."""
