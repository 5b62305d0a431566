"""MEGA model architectures registered with fairseq (placeholder; the models are added here)."""
