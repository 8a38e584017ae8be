"""Self-supervised pretraining: coach-adversarial inpainting."""
