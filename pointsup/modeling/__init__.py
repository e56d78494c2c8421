"""Models: point ops, losses, mask heads, builders."""
