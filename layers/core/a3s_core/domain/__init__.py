"""The kit's vocabulary: stored items, statuses, lanes, agents, skills and errors. Imports nothing else of the kit."""
