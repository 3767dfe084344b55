"""PyTorch models of the paper, in the style of diffusers model files (the config beside the model): the SMPL
skeleton (`motion`), 4DMoT (`tokenizer`, Sec. 3.1) and MV-DiT with 4D motion attention and 4D RoPE (`mvdit`, Sec. 3.2-3.3)."""
