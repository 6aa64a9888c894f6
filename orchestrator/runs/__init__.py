"""Runs as data: the RunService interface the gRPC API adapts, and its implementations."""
