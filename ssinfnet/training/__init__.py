"""The training room: the loop, phases, optimisers, losses, checkpoints, exported models, device policy, provenance."""
