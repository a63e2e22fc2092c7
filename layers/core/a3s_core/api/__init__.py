"""The HTTP API: request and response models, body checks, the console's files and the use cases (service)."""
