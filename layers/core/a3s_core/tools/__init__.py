"""The built-in tools, their isolated runner, the sandbox that runs code, and an external worker's task."""
