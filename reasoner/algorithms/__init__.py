"""RL math as pure tensor functions: advantages, policy losses, KL estimators, loss aggregation,
length terms, value targets; and the registry that names them (`registry`, built-ins in
`builtin`).

No model and no I/O in here. Shapes: B prompts, G completions per prompt, n sequences in a
(micro-)batch, T completion tokens (padded). Each function's docstring cites its paper and
equation.
"""

import reasoner.algorithms.builtin  # noqa: E402, F401  (registers the built-in algorithms)
