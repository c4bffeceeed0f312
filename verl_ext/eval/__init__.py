"""Evaluation harness: V*, HR-Bench 4K/8K, RefCOCO-family and VQA sets on the training loop itself.

``python -m recipe.ground_r1.main_eval`` composes the recipe's training config plus ``config/eval/default.yaml``
and calls :func:`verl_ext.eval.driver.run_eval`; :mod:`verl_ext.eval.metrics` holds the metrics, shared with the
trainer's in-training validation (:func:`verl_ext.eval.metrics.validation_metrics`). See docs/eval.md.
"""
