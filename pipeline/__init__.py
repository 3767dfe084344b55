"""The MTVCraft pipeline, one package per stage of the asset graph, in its order (README "How the code is laid out"):
core -> synthetic -> curation -> motion -> tokenizer -> mvdit -> animation -> evaluation; a later stage imports
earlier ones, never back (tests/test_import_layers.py)."""
