"""The stage graph: the plan, the artifact key layout and the launch contract (the operator
imports these three, so they stay light: no torch)."""
