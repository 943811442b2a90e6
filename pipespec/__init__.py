"""pipespec: predict, simulate and measure speculative decoding pipelines."""
__version__ = "0.1.0"
