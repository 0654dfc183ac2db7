"""Energy-aware LLM deployment recommender: rank GPU x model x quantization x engine by EOR/TWEOR."""

__version__ = "0.1.0"
