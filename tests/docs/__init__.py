"""The documentation's examples, run as a reader would run them."""
