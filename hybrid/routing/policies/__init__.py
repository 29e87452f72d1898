"""The router's policies, one per module, in chain order: privacy, capability, length,
capacity, difficulty."""
