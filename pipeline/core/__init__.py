"""Shared ground of every stage: settings, Lance tables, video I/O, progress, the Ray runtime, checkpoint files,
previews, rejections."""
