"""The engine: the run driver's turn loop, delegation, workflows, control, containment and the sweeper."""
