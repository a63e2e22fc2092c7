"""`a3s`: the operator's command line for a deployment (or `a3s dev`), over the HTTP API only."""
from .main import main

__all__ = ["main"]
