"""reasoner: reinforcement learning from verifiable rewards for reasoning LLMs."""
