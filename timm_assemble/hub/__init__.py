"""Hugging Face Hub: where our published weights live and how they are checked."""
