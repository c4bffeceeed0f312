"""The recipe's trainer hook: routes evidence scales to SRPO and logs per-scale-bin diagnostics."""
