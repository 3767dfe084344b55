"""Animation (Sec. 3.2-3.3, App. A.3): the CogVideoX and Wan sampling pipelines, long motions in windows, the
animate CLI."""
