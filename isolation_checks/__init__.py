"""The conformance checks: one module per namespace, one guarantee per check."""
