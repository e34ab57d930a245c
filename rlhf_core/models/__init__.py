"""Layer 2, the models: loading and saving GPT-2 models and their tokenizer, the thread and device policy
(`loading`), token sequences, generation and log-probabilities (`sequences`), and the reward and value heads
(`heads`). Imports the world below it, never a training stage."""
