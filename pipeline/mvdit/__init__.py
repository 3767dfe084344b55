"""MV-DiT (Sec. 3.2, App. A.2): model factory, training loop and its data, video latents, Wan conditioning,
sharding, memory, the stage."""
