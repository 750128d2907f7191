"""`airlock acceptance`: seed 001's go/no-go, measured on the deployed site."""
