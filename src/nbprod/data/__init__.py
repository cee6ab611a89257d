"""Training profiles and data validation."""
