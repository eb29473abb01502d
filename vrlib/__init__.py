"""vrlib: reinforcement fine-tuning of video MLLMs, small and tested."""
