"""SMPL skeleton and forward kinematics (paper Sec. 3.1)."""
