"""Operators: the steps of a rule's pipeline, one module per family."""
