"""Ray: actor resources, the actors, placement, the scheduler and the job kit."""
