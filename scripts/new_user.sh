#!/usr/bin/env bash
# The first hour of a new user, end to end, on the embedded model with vLLM (after `make setup`):
#   1. their own JSONL data (problem, answer, solution) for RL, the held-out set and the cold start;
#   2. their own verifier, plugged in by one override (reward.verifier._target_=...);
#   3. Ctrl-C (SIGINT to the whole process group) after the first checkpoint, then the resume
#      command the run printed, run exactly as printed;
#   4. reasoner-eval on the base and the trained model, and reasoner-eval compare.
# Usage: bash scripts/new_user.sh [WORK_DIR]   (default: a fresh temporary directory)
# Exits non-zero, saying which step failed, if any step does not do what the README says.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/.venv/bin"
W="${1:-$(mktemp -d)}"
mkdir -p "$W"
W="$(cd "$W" && pwd)"
cd "$W"
fail() { echo "new_user.sh: FAILED: $*" >&2; exit 1; }
began=$(date +%s)

# 1. own data: 120 arithmetic rows with worked solutions, as a user's JSONL file
"$BIN/python" - <<'EOF'
import json
from reasoner.data import arithmetic

with open("my.jsonl", "w") as f:
    for p in arithmetic.generate(120, [1], seed=42):
        f.write(json.dumps({"id": p.id, "problem": p.problem, "answer": p.answer, "solution": p.solution}) + "\n")
EOF

# 2. own verifier: the last number of the completion equals the answer (no keyword arguments)
mkdir -p my_verifiers
cat > my_verifiers/__init__.py <<'EOF'
import re

from verifiers.base import VerifyResult


class LastNumber:
    def verify_batch(self, pairs):
        out = []
        for completion, answer in pairs:
            numbers = re.findall(r"-?\d+", completion)
            ok = bool(numbers) and numbers[-1] == answer.strip()
            out.append(VerifyResult(ok, float(ok), numbers[-1] if numbers else None, "last number"))
        return out

    def close(self):
        pass
EOF
export PYTHONPATH="$W${PYTHONPATH:+:$PYTHONPATH}"

# 3. train in its own process group, Ctrl-C it after the first checkpoint, resume as printed
setsid "$BIN/reasoner-train" data.train=my.jsonl data.heldout=my.jsonl data.heldout_n=20 \
  sft.source=my.jsonl sft.examples=64 reward.verifier._target_=my_verifiers.LastNumber \
  trainer.steps=6 trainer.prompts_per_step=2 algorithm.sampling.group_size=4 trainer.checkpoint_every=1 \
  hydra.run.dir="$W/run" >train.out 2>train.err &
pid=$!
for _ in $(seq 1 900); do
  [ -d run/checkpoints/step_000001 ] && break
  kill -0 "$pid" 2>/dev/null || fail "training ended before its first checkpoint: $(tail -5 train.err)"
  sleep 1
done
[ -d run/checkpoints/step_000001 ] || fail "no checkpoint after 15 min"
kill -INT -- "-$pid" || true  # Ctrl-C: every process of the job's group
rc=0; wait "$pid" || rc=$?
[ "$rc" = 130 ] || fail "Ctrl-C: exit status $rc, expected 130: $(tail -5 train.err)"
resume=$(sed -n 's/^resume with: //p' train.err)
[ -n "$resume" ] || fail "no resume command printed: $(tail -5 train.err)"
echo "resuming with: $resume"
eval "$resume" >resume.out 2>resume.err || fail "the printed resume command failed: $(tail -5 resume.err)"
"$BIN/python" -c "
import json, sys
s = json.load(open('run/summary.json'))
assert s['steps'] == 6 and s['resumed_from_step'] >= 1, s
print('trained: held-out', {k: round(v['accuracy'], 3) for k, v in s['heldout'].items()}, 'resumed from step', s['resumed_from_step'])
" || fail "summary.json does not show a resumed 6-step run"

# 4. evaluate the base and the trained model on a few GSM8K problems, then compare
evaluate() {  # NAME MODEL
  "$BIN/reasoner-eval" model.path="$2" 'benchmarks=[gsm8k]' limit=8 n=1 max_tokens=64 \
    hydra.run.dir="$W/eval_$1" >"eval_$1.out" 2>"eval_$1.err" || fail "reasoner-eval ($1): $(tail -5 "eval_$1.err")"
}
evaluate base embedded:smollm2-135m
evaluate trained "$W/run/checkpoint"
"$BIN/reasoner-eval" compare "$W/eval_base" "$W/eval_trained" || fail "reasoner-eval compare"
echo "new_user.sh: all steps passed in $(( $(date +%s) - began )) s (work dir $W)"
