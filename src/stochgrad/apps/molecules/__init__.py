"""De novo molecular design: a SMILES GRU prior fine-tuned by policy gradient (needs RDKit)."""
