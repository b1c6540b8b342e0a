"""Reading and writing files: PyTorch checkpoints without pickle's code execution."""
