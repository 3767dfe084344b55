"""MV-DiT at full size: model factory, sharding, data and memory (Sec. 3.2, App. A.2)."""
