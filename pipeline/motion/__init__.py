"""Motion sources for 4DMoT (Sec. 3.1): motion-capture import (AMASS, BVH, the mocap npz), camera placement, training windows."""
