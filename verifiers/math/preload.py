"""What the math verifier's fork server imports before it forks any worker.

Importing this module compares a few answers of every common shape, so that the ANTLR parser's
prediction tables and sympy's caches are built once, in the fork server, and every worker forked
from it (including a replacement for a worker killed on timeout) starts warm. A cold worker
spends 0.1-0.7 s on its first parse of each new shape, a good part of the 1 s budget.
"""

from verifiers.math.equivalence import equivalent

WARM_UP = (
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}"),
    ("(3, \\frac{\\pi}{2})", "(3, \\pi/2)"),
    ("[1, 2) \\cup (3, \\infty)", "x > 3"),
    ("-1 < x \\le 4", "(-1, 4]"),
    ("\\{1 \\pm \\sqrt{5}, -2\\}", "-2, 1+\\sqrt{5}, 1-\\sqrt{5}"),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix} 1 & 2 \\\\ 3 & 5 \\end{pmatrix}"),
    ("x^5 - x^4 + x^3 - 1", "(x - 1)(x^4 + x^2 + 1)"),
    ("\\frac{\\cos x}{\\sin x}", "\\cot x"),
    ("y = 2x + 3", "2x - y + 3 = 0"),
    ("3 + 4i", "\\sqrt{25} e^{i \\pi}"),
    ("2.5 \\times 10^{-3}", "\\log_2 8 + \\binom{5}{2}"),
)

for pred, gold in WARM_UP:
    equivalent(pred, gold)
