"""CondInst and BoxInst: dynamic mask heads and their losses (masks, points or boxes)."""
