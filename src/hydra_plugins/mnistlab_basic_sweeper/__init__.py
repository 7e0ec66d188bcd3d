"""Hydra's basic (grid) sweeper, as mnistlab's ``hydra/sweeper=basic``: see basic_sweeper.py."""
