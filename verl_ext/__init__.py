"""Ground-R1 on veRL: thinking with images, trained with Scale Relative Policy Optimization (SRPO).

Importing this package is cheap; veRL registrations happen in :mod:`verl_ext.plugin`, which
``import verl`` loads in every process through the ``verl.plugins`` entry point.
"""

__version__ = "0.1.0"
