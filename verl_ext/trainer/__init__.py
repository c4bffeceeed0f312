"""The recipe's trainer hook: routes evidence scales to SRPO and logs per-scale-bin diagnostics."""

#: ``trainer.v1.trainer_mode`` of the Ground-R1 trainer (veRL's sync trainer plus the evidence-scale hook).
TRAINER_MODE = "ground_r1_sync"
