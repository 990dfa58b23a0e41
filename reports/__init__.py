"""Report writers of nsconform: conformance.json (CONTRACT) and the views built from it."""
