"""Persistence: the Store contract, its in-memory fake and the DynamoDB adapter."""
