"""The monitor's modal screens: a request's whole decision, and the keys."""
