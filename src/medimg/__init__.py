"""medimg: medical image analysis helpers for chapter-style notebooks."""

__version__ = "0.1.0"
