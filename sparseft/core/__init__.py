"""What every backend shares and no model library is imported by."""
