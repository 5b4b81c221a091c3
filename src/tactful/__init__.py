"""tactful: decides when a storefront may contact a shopper, on which channel, and when not."""

__version__ = "0.1.0"
