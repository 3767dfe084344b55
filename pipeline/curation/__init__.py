"""Curation (paper App. B): raw videos -> shots -> SMPL poses -> single-person sub-clips -> clip scores and filters
-> the motion_video table."""
