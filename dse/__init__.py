"""dse: design-space exploration for SqueezeNet-family convolutional networks."""

__version__ = "0.1.0"
