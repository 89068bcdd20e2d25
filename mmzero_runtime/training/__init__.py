"""GRPO training of one role: group advantages, the clipped loss, response log-probs, the trainer.

`loss.grpo_loss` is a pure function of tensors and the role's `GRPOSpec`; `trainer.GRPOTrainer`
owns the model, the frozen reference, the optimizer and checkpoints. torch is imported here, so
callers import this package only inside the commands that train.
"""
