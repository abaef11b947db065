"""Weight optimization: LoRA fine-tuning of the bundled model on the CPU, through DSPy's `Provider`."""
