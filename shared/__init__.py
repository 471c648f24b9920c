"""What the bot and the worker both use: configuration, protocol messages, generation parameters.

Nothing in this package imports torch, diffusers or transformers.
"""
