"""veRL plugin: ``import verl`` imports this module in every process through the ``verl.plugins`` entry point.

Each import below registers something with one of veRL's registries.
"""
