"""Model adapters behind one interface, and the registry that picks one by name."""
