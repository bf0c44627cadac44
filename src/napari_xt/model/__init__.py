"""xT model pieces: nested tokenization, region encoders, context encoders, heads, XTModel, checkpoints."""
