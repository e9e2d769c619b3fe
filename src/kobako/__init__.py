"""kobako: a cloud in a box that speaks the AWS wire protocols and really runs the work."""

__version__ = "0.1.0"
