"""Datalists (MONAI / Decathlon JSON) of the datasets the bundles train on, and the code that builds them."""
