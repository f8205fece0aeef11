"""HTTP blueprints under ``/api``."""
