"""RL math as pure tensor functions: advantages, policy losses, KL estimators, loss aggregation.

No model and no I/O in here. Shapes: B prompts, G completions per prompt, n sequences in a
(micro-)batch, T completion tokens (padded). See ../shared REFERENCE_FORMULAS.md for sources.
"""
