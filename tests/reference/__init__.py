"""Independent plain-PyTorch reference implementations, written from papers and frameworks."""
