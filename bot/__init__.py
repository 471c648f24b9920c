"""The chat process: conversation core, store, dispatcher, chat adapters and the CLI.

This package must never import torch, diffusers or transformers.
"""

__version__ = "0.1.0"
