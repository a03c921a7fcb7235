"""`ecnas demo`: the whole pipeline on the embedded default (campaign, checks, surrogate,
export, search, plot and summary), CPU only, no download."""
