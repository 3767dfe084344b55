"""4DMoT, the 4D motion tokenizer (Sec. 3.1, App. A.1): its training loop, stage, clip tokenizing, codebook
analytics, evaluation."""
