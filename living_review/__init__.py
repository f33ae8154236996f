"""Living systematic review of parenting interventions for child attachment."""

__version__ = "0.1.0"
