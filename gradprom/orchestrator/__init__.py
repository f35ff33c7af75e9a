"""Searches on Ray Tune with Optuna, results as Parquet, Pareto fronts, progress and plots."""
