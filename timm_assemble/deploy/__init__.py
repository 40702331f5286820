"""Deployment: BatchNorm folding into a deploy copy (`fold`) and parity-checked model files (`export`)."""
