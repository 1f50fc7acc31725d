"""Loading checkpoints and the facts about them a job needs before loading weights."""
