"""Motion (Sec. 3.1): motion-capture import (AMASS, BVH, the mocap npz) and its camera placement, 4DMoT's
training windows and sources, and the driving motion of an animation (a motion file or a video's poses)."""
