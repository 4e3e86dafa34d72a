"""Hand-written torch references of the zoo's torchvision models, built after torchvision's source with
torchvision's own module structure, so their state_dict names are torchvision's (torchvision itself is
not importable beside torch 2.13 CPU here: its C extension does not load)."""
