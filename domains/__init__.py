"""The domains gentleclip ships (proteins, remote sensing) and what they share (text encoder, bad-record reports)."""
