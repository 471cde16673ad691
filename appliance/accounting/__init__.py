"""Usage accounting and budgets: what each request used, in each modality's unit, and what a key may still use."""
