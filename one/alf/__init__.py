"""The ALF (ALyx File) naming convention, file IO and cache tables."""
