"""Advantage estimators registered with veRL's ``register_adv_est``."""
