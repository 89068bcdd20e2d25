"""One module per stage kind, and the role operations and GRPO loop they share."""
