"""The model library: finding, describing and safely loading model files. No Qt here."""
