"""Pure transforms over Rosetta's records: encoders now; alignment, normalisation and quality next."""
