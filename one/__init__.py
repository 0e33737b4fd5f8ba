"""one-next: a fast, dependable implementation of ONE, the Open Neurophysiology Environment."""

__version__ = '3.6.1'
