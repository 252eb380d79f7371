"""auditor-lite: a small multimodal auditor for referring audio-visual segmentation masks."""

__version__ = "0.1.0"
